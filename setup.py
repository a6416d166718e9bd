"""storybot: a story-telling robot running a llama2.c model on a Milk-V Duo.

`pip install .` compiles the C kernel (_kernel/) into robot._storybot with cffi in
API mode, using this machine's C compiler."""
from setuptools import find_packages, setup

setup(
    name="storybot",
    version="0.1.0",
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
