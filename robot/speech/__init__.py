"""Speech: sentences to sound (output), and push-to-talk prompts (listen)."""
