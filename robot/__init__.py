"""storybot: a llama2.c story model in C (via cffi), told aloud by a small robot."""
__version__ = "0.1.0"
