"""storybot: a story-telling robot running a llama2.c model on a Milk-V Duo.

`pip install .` compiles the C kernel (_kernel/) into robot._storybot with cffi in
API mode, using this machine's C compiler."""
import os
import re

from setuptools import find_packages, setup


def package_version() -> str:
    """robot.__version__, the one place the version is written (storybot --version)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "robot", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


setup(
    name="storybot",
    version=package_version(),
    description="A story-telling robot: a llama2.c model in C, driven from Python, spoken aloud",
    packages=find_packages(include=["robot", "robot.*"]),
    package_data={"robot": ["data/*"]},
    python_requires=">=3.9",
    install_requires=["cffi>=1.15", "tomli>=1.1; python_version < '3.11'"],
    # speech input (storybot listen, [speech_in]): offline recognition and the microphone;
    # gpio: a push-to-talk button through libgpiod (else /sys/class/gpio is used)
    # speech: the sound device (PyAudio) and the pyttsx3 backend; the default espeak
    # backend needs only cffi and libespeak-ng, and --wav needs neither
    extras_require={"listen": ["vosk>=0.3.45", "pyaudio>=0.2.11"], "gpio": ["gpiod>=2.0"],
                    "speech": ["pyaudio>=0.2.11", "pyttsx3>=2.99"]},
    cffi_modules=["_kernel/build_ffi.py:ffibuilder"],
    entry_points={"console_scripts": ["storybot = robot.cli:main"]},
    zip_safe=False,
)
