# The two commands: `make demo` (whole system on embedded defaults) and `make test` (full suite).
.PHONY: setup demo test serve bench footage train

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/compoundeye demo

test: setup
	@bash scripts/test.sh $(PYTEST_ARGS)

serve: setup
	.venv/bin/compoundeye serve

bench: setup
	.venv/bin/compoundeye bench detector --json

footage: setup
	.venv/bin/python -m datasets.sample_footage --out samples/footage

train:
	@bash scripts/setup.sh train
	.venv-train/bin/python -m datasets.train_car_detector
