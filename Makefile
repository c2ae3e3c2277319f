.PHONY: install lint format test test-slow bench gpu-check

install:
	pip install torch==2.13.0 && pip install -e '.[dev]'

lint:
	ruff check zerorl tests benchmarks
	ruff format --check zerorl tests benchmarks

format:
	ruff format zerorl tests benchmarks
	ruff check --fix zerorl tests benchmarks

test:
	python -m pytest -q

test-slow:
	python -m pytest -q -m slow

bench:
	pip install -q -e '.[bench]' && python -m benchmarks

gpu-check:
	bash scripts/gpu-check
