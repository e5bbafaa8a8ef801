"""Data: video/image I/O, real photos, the synthetic world, token shards.

Import the submodules you need (`vidgpt.data.video_io`, `vidgpt.data.photos`, ...);
this package itself imports nothing heavy.
"""
