################################################################################
#
# python-pyaudio
#
################################################################################

PYTHON_PYAUDIO_VERSION = 0.2.14
PYTHON_PYAUDIO_SOURCE = PyAudio-$(PYTHON_PYAUDIO_VERSION).tar.gz
PYTHON_PYAUDIO_SITE = https://files.pythonhosted.org/packages/source/P/PyAudio
PYTHON_PYAUDIO_SETUP_TYPE = setuptools
PYTHON_PYAUDIO_LICENSE = MIT
PYTHON_PYAUDIO_LICENSE_FILES = LICENSE.txt
PYTHON_PYAUDIO_DEPENDENCIES = portaudio

$(eval $(python-package))
