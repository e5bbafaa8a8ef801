"""The synthetic world: scenes, rendering, captions, edit pairs and training clips.

Import from `vidgpt.data.synthetic` (the stable entry point); the modules here each do one job:
palette/shapes (what exists), scene (descriptions, motion, sampling), render (pixels),
captions (words), edit_pairs (scene edits), training (random clips for the tokenizer).
"""
