# Transformers, Graded. `make book` builds the HTML book, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CHAPTERS := $(wildcard chapters/*.ipynb)
RENDERED := $(patsubst chapters/%,book/chapters/%,$(CHAPTERS))
# A chapter page is re-executed when its notebook or any course code changes.
CODE := $(wildcard solutions/*.py autograder/*.py autograder/checks/*.py)

.PHONY: book lint test student reset-chapter notebooks kit venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

# The book shows each chapter's student view (stubs) with the outputs of the reference run.
book/chapters/%.ipynb: chapters/%.ipynb $(CODE) | $(STAMP)
	$(PY) -m autograder render $< $@

# Figures that chapters show from files (e.g. a benchmark's plot) travel with the rendered pages.
FIGURES := $(patsubst chapters/%,book/chapters/%,$(wildcard chapters/figures/*))
book/chapters/figures/%: chapters/figures/%
	@mkdir -p $(dir $@)
	cp $< $@

# MathJax ships with the book (pages render their maths with no network): the pinned npm package's
# browser build, checked against its sha256, unpacked where Sphinx's mathjax_path (_config.yml) points.
MATHJAX := mathjax-3.2.2.tgz
MATHJAX_SHA256 := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
MATHJAX_DIR := book/_static/mathjax
$(MATHJAX_DIR)/tex-mml-chtml.js:
	rm -rf $(MATHJAX_DIR) && mkdir -p $(MATHJAX_DIR)
	cd $(MATHJAX_DIR) && npm pack --silent mathjax@3.2.2 >/dev/null \
	  && echo "$(MATHJAX_SHA256)  $(MATHJAX)" | sha256sum --check --quiet \
	  && tar xzf $(MATHJAX) --strip-components=2 package/es5 && rm $(MATHJAX)

# The Chinese edition is written from the English pages (autograder/translated_book.py: nothing runs twice)
# and built into _build/html/zh, where every page's language switch finds it.
book: $(RENDERED) $(FIGURES) $(MATHJAX_DIR)/tex-mml-chtml.js | $(STAMP)
	$(VENV)/bin/jupyter-book build --quiet .
	$(PY) -m autograder.translated_book zh _build/zh/source
	$(VENV)/bin/jupyter-book build --quiet _build/zh/source --path-output _build/zh
	rm -rf _build/html/zh && cp -r _build/zh/_build/html _build/html/zh
	@echo "The book is in _build/html/index.html (Chinese: _build/html/zh/index.html)"

# Lint and format checks (ruff, configured in pyproject.toml), then every test.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q -n 2 --dist loadgroup

# Writes only the notebooks that do not exist yet: student/ holds the learner's work. The Chinese edition:
# make student LANG=zh (into student/zh/). LANG from the environment (a locale such as C.UTF-8) means English.
EDITION := $(if $(filter zh,$(LANG)),zh,en)
STUDENT_FOLDER := $(if $(filter zh,$(EDITION)),student/zh,student)
student: $(STAMP)
	$(PY) -m autograder student $(STUDENT_FOLDER) $(CHAPTERS) --lang $(EDITION)

# A fresh copy of one chapter, over the learner's work: make reset-chapter CHAPTER=02_attention
reset-chapter: $(STAMP)
	@test -n "$(CHAPTER)" || { echo "usage: make reset-chapter CHAPTER=02_attention"; exit 2; }
	$(PY) -m autograder student $(STUDENT_FOLDER) chapters/$(CHAPTER).ipynb --reset --lang $(EDITION)

# The committed learner notebooks that "Open in Colab"/Binder links open (tests check they are in sync).
notebooks: $(STAMP)
	$(PY) -m autograder student notebooks $(CHAPTERS) --reset
	$(PY) -m autograder student notebooks/zh $(CHAPTERS) --reset --lang zh

# The public edition, without the answer key, for the public repository that _config.yml names: the book's
# pages, the learner notebooks and the kit (autograder/public.py). make public PUBLIC=../course-public
PUBLIC ?= build/public
.PHONY: public
public: $(RENDERED) $(FIGURES) kit | $(STAMP)
	$(PY) -m autograder.public $(PUBLIC)

# The learner's kit: one wheel in dist/ with the checks and no reference solution (kit/build.py).
kit: $(STAMP)
	$(PY) kit/build.py

# Never student/: it holds the learner's work.
clean:
	rm -rf _build book/chapters book/_static/mathjax build dist
