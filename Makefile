# The README's two commands: `make demo` and `make test` (each installs everything first).
PY ?= python3

.PHONY: install demo test bench

install:
	bash tools/install.sh

demo: install
	vidgpt generate "a red circle moving right" --seed 0 --grid -o outputs/demo/a_red_circle_moving_right.mp4
	vidgpt demo --gallery
	vidgpt demo

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) tools/bench_tokenizer.py
	$(PY) tools/bench_generate.py --tiny
	$(PY) tools/bench_train.py --tiny
