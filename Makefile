# Everything a newcomer or CI needs: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SE := $(VENV)/bin/searchengine
DEMO_INDEX ?= indexes/demo
# a few minutes of indexing on 2 cores; `searchengine index samples/docs` takes them all
DEMO_DOCS ?= debian-faq doc-debian fortunes-min maint-guide developers-reference gnu-standards
export OMP_NUM_THREADS ?= 2

.PHONY: install test demo lint bench-text models clean-demo sysdeps

install: $(VENV)/.installed

# torch and torchvision first, pinned, so pip takes this machine's cached wheels and never
# resolves a different (multi-GB) build on its own.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q --disable-pip-version-check -e '.[test]'
	touch $@

# espeak-ng speaks the test recordings for the speech tests; chromium runs the web page's
# browser tests (Playwright drives it; no browser download); tesseract-ocr brings the `eng`
# data of the default OCR engine (tesserocr's wheel holds libtesseract; without the data
# the index falls back to RapidOCR). Debian packages, need root.
sysdeps:
	@command -v espeak-ng >/dev/null && command -v chromium >/dev/null && \
	  command -v tesseract >/dev/null || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq espeak-ng chromium tesseract-ocr >/dev/null; } || \
	    { echo "install espeak-ng, chromium and tesseract-ocr (apt-get install ...) for the tests"; \
	      exit 1; }

models: install
	$(PY) scripts/make_test_models.py --out tests/.models

test: install models sysdeps
	$(VENV)/bin/ruff check searchengine scripts tests
	$(VENV)/bin/pytest -q -n 2 --dist loadfile --durations=15

# The main job on real sample media: documents, a video and sound-theme recordings from
# Debian packages. CLIP/CLAP weights are not installable here, so frames and sounds wait as
# `pending` (status says how to provide weights); text, speech and file names are searchable.
demo: install
	$(PY) scripts/fetch_samples.py docs sounds video
	$(SE) index $(addprefix samples/docs/,$(DEMO_DOCS)) samples/video \
	    samples/sounds/sound-theme-freedesktop --index $(DEMO_INDEX)
	$(SE) status --index $(DEMO_INDEX)
	@for q in "how do I install a package" "how do I report a bug" \
	          "a joke about programmers"; do \
	    echo; echo "== search: $$q"; \
	    $(SE) search "$$q" --index $(DEMO_INDEX) -k 3; \
	done
	@echo; echo "== search: cockatoo (video, found by name until CLIP weights are given)"
	$(SE) search "cockatoo" --index $(DEMO_INDEX) -k 2 --type video
	@echo; echo "== the web page: $(SE) serve --index $(DEMO_INDEX)  (http://127.0.0.1:8765/)"

bench-text: install
	$(PY) scripts/fetch_samples.py bigdocs
	$(PY) scripts/bench_text.py samples/bigdocs

lint: install
	$(VENV)/bin/ruff check searchengine scripts tests

clean-demo:
	rm -rf $(DEMO_INDEX)
