"""Trainers: the video tokenizer (tokenizer_trainer) and the LM (added by its part)."""
