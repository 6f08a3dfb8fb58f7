# woes-auth: every target sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/woes/auth/v1/*.proto)
GEN    := clients/python/src
EXAMPLE_GEN := examples/conversations/generated
PYTEST_ARGS ?=

.PHONY: venv protos run test bench bench-instructions lint fmt clean check-protos fuzz

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ./clients/python -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Regenerate the Python code of the contract (committed; see tests/unit/app/test_protogen.py).
protos: $(STAMP)
	$(BIN)/python -m auth_service.app.protogen $(GEN)
	$(BIN)/python -m grpc_tools.protoc -Iexamples/conversations/protos --python_out=$(EXAMPLE_GEN) \
	  --pyi_out=$(EXAMPLE_GEN) --grpc_python_out=$(EXAMPLE_GEN) woes_conversations.proto

# Apply any pending schema migration first, so an existing development database keeps working.
run: $(STAMP)
	$(BIN)/woes-auth db upgrade
	$(BIN)/woes-auth serve

# pytest exits 5 when it collects nothing: say so and fail, since an empty run proves nothing.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Instructions per call of one serving process under callgrind: baseline, warm, flood (needs valgrind).
bench-instructions: $(STAMP)
	$(BIN)/python bench/instructions.py

# Coverage-guided fuzzing of the request parsers (atheris) for FUZZ_SECONDS, starting from tests/corpus/.
# New inputs go to .fuzz/corpus, crashing inputs to .fuzz/crashes/ (copy them to tests/corpus/ once fixed).
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[fuzz]'
	rm -rf .fuzz && mkdir -p .fuzz/corpus .fuzz/crashes && cp tests/corpus/* .fuzz/corpus/
	$(BIN)/python -m fuzz.fuzz_parsers -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=.fuzz/crashes/ .fuzz/corpus

# Style, the import rules of docs/architecture.md (import-linter, [tool.importlinter] in pyproject.toml)
# and the types of the domain and the client package (mypy, [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check auth_service clients/python/src/woes_auth_client tests bench examples fuzz
	$(BIN)/ruff format --check auth_service clients/python/src/woes_auth_client tests bench examples fuzz
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format auth_service clients/python/src/woes_auth_client tests bench examples fuzz
	$(BIN)/ruff check --fix auth_service clients/python/src/woes_auth_client tests bench examples fuzz

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache build *.egg-info clients/python/src/*.egg-info
