"""The contract, relay/web/openapi.yaml: served at /openapi.json, valid OpenAPI 3.1, and in
agreement with the app: the same operations, and every status and error code the code can answer
with documented on its operation (read from the code with `ast`, so a new one cannot slip by).
Whether the running app keeps to it is tests/test_contract_fuzz.py's question."""

import ast
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema_rs
import schemathesis
import yaml

from relay.domain.samples import sample_event

ROOT = Path(__file__).resolve().parents[3]
DOCUMENT = ROOT / "relay" / "web" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@cache
def document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def resolve(node: Any) -> Any:
    """`node`, or what its local $ref points to."""
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        node = pointer(node["$ref"])
    return node


def pointer(ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used, got {ref!r}"
    node: Any = document()
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def documented_operations() -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


# Routes that are no operation: admin.py's catch-all under /admin, which answers 401, then 404 or
# 405, for any path or method no other route takes (the document's info.description says so);
# and the dashboard's pages, HTML for a browser (relay/web/dashboard, tests/relay/web/dashboard).
NOT_OPERATIONS = {"static", "admin.elsewhere"}
NOT_OPERATIONS_UNDER = "dashboard."


def served_operations(app) -> dict[tuple[str, str], Callable]:
    """(method, OpenAPI path) -> view function, for every rule of the app but HEAD, OPTIONS and
    NOT_OPERATIONS."""
    served = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_OPERATIONS or rule.endpoint.startswith(NOT_OPERATIONS_UNDER):
            continue
        path = re.sub(r"<(?:[^<>]*:)?([^<>:]+)>", r"{\1}", rule.rule)  # <path:event_id> -> {event_id}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            served[(method, path)] = app.view_functions[rule.endpoint]
    return served


def test_openapi_json_serves_the_document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == document()


def test_the_document_is_valid_openapi_3_1():
    doc = document()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"]), doc["openapi"]
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    # That meta-schema leaves the Schema Objects alone: each must be valid JSON Schema 2020-12 ...
    schemas = list(schema_objects(doc))
    assert len(schemas) > 20
    for where, schema in schemas:
        assert jsonschema_rs.meta.is_valid(schema), f"{where}: not a valid JSON Schema 2020-12 schema"
    # ... and every reference must lead somewhere.
    for where, ref in references(doc):
        try:
            pointer(ref)
        except (KeyError, AssertionError) as exc:
            raise AssertionError(f"{where}: $ref {ref!r} leads nowhere ({exc!r})") from None
    ids = [operation["operationId"] for operation in documented_operations().values()]
    assert len(ids) == len(set(ids)), ids
    assert doc["info"]["version"] == metadata.version("wms-webhook-relay")


def test_the_documents_examples_fit_their_schemas():
    doc = document()
    components = doc["components"]
    checked = 0
    for name, schema in components["schemas"].items():
        validator = jsonschema_rs.Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": components}
        )
        for example in schema.get("examples", []):
            errors = [error.message for error in validator.iter_errors(example)]
            assert not errors, f"components.schemas.{name}: example {example!r}: {errors}"
            checked += 1
    assert checked
    # The event our own samples are made of (what `relay send-sample` posts) is one.
    event = jsonschema_rs.Draft202012Validator({"$ref": "#/components/schemas/Event", "components": components})
    for code in ("WMS_LOADED", "MEASUREMENT_CREATED", "INTERMEDIATE_RESULTS", "API_ERROR"):
        sample = sample_event(code, "s-1", 3, timestamp=1689684577)
        assert event.is_valid(sample), sample


def schema_objects(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every Schema Object of the document (not the schemas inside them), with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else key
            if key == "schema" or where == "components.schemas":
                yield here, value
            else:
                yield from schema_objects(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from schema_objects(value, f"{where}[{i}]")


def references(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from references(value, f"{where}.{key}" if where else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from references(value, f"{where}[{i}]")


def test_the_apps_routes_and_the_documents_operations_are_the_same(app):
    served, documented = set(served_operations(app)), set(documented_operations())
    missing = sorted(served - documented)
    extra = sorted(documented - served)
    assert served == documented, (
        f"served but not in relay/web/openapi.yaml: {missing}; in relay/web/openapi.yaml but not served: {extra}"
    )


# What the code can answer with, read with ast from each view, the functions it calls in
# relay/web, the app's and its blueprint's before_request functions, and for a view that reads
# the body, what reading it can raise.


class Answer(NamedTuple):
    status: int
    code: str
    headers: frozenset[str]
    where: str  # for the assertion message
    cause: str = "raise"  # "raise": an ApiError; "redis", "body", "bug": through the app's error handlers


# Through the handlers of relay/web/errors.py, not an ApiError in the view:
REDIS_ERROR = Answer(503, "unavailable", frozenset({"Retry-After"}), "a RedisError (errors.py's handler)", "redis")
BODY_TOO_LARGE = Answer(413, "payload_too_large", frozenset(), "Werkzeug's MAX_CONTENT_LENGTH (errors.py)", "body")
BUG = Answer(500, "internal_error", frozenset(), "any other exception (errors.py's handler)", "bug")
# Reading the request's body is where Werkzeug enforces MAX_CONTENT_LENGTH.
BODY_READERS = {"data", "get_data", "get_json", "json", "form", "files", "values", "stream", "input_stream"}


class Scan:
    """The answers of view functions, read from their source (or from `sources`, module -> text)."""

    def __init__(self, sources: dict[str, str] | None = None) -> None:
        self._sources = sources or {}
        self._trees: dict[str, ast.Module] = {}
        self._memo: dict[tuple[str, int], frozenset[Answer]] = {}

    def tree(self, module: str) -> ast.Module:
        if module not in self._trees:
            path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
            text = self._sources[module] if module in self._sources else path.read_text(encoding="utf-8")
            self._trees[module] = ast.parse(text, str(path))
        return self._trees[module]

    def imported(self, module: str) -> dict[str, str]:
        """name -> module, for the `from X import name` of `module`."""
        return {
            alias.asname or alias.name: node.module
            for node in ast.walk(self.tree(module))
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names
        }

    def answers_of(self, function: Callable) -> frozenset[Answer]:
        """What `function`, a live function of ours, can answer with."""
        module = function.__module__
        found = [
            node
            for node in ast.walk(self.tree(module))
            if isinstance(node, ast.FunctionDef) and node.name == function.__name__
        ]
        if len(found) > 1:  # nested functions of one name: the line of the def, or of a decorator
            line = inspect.unwrap(function).__code__.co_firstlineno
            found = [node for node in found if line in (node.lineno, *(d.lineno for d in node.decorator_list))]
        assert len(found) == 1, f"cannot find {module}.{function.__qualname__} in its source"
        return self._answers(module, found[0])

    def answers_of_name(self, module: str, name: str) -> frozenset[Answer]:
        """What the module-level function `name` of `module` can answer with."""
        found = self._function(module, name)
        assert found is not None, f"no function {name} in {module}"
        return self._answers(*found)

    def _answers(self, module: str, function: ast.FunctionDef) -> frozenset[Answer]:
        key = (module, function.lineno)
        if key not in self._memo:
            self._memo[key] = frozenset()  # a recursive call adds nothing new
            found: set[Answer] = set()
            for statement in function.body:
                self._visit(module, statement, (), False, found)
            self._memo[key] = frozenset(found)
        return self._memo[key]

    def _visit(
        self, module: str, node: ast.AST, handlers: tuple[ast.ExceptHandler, ...], guarded: bool, found: set[Answer]
    ) -> None:
        """Collect into `found`; `handlers` are the except clauses `node` is in, `guarded` whether
        a try around it catches RedisError."""
        if isinstance(node, ast.Try):
            catches_redis = any("RedisError" in ast.unparse(h.type) for h in node.handlers if h.type is not None)
            for child in node.body:
                self._visit(module, child, handlers, guarded or catches_redis, found)
            for handler in node.handlers:
                for child in handler.body:
                    self._visit(module, child, (*handlers, handler), guarded, found)
            for child in node.orelse + node.finalbody:
                self._visit(module, child, handlers, guarded, found)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name == "ApiError":
                found.update(self._api_error(module, node, handlers))
            elif (callee := self._function(module, name)) is not None:
                answers = self._answers(*callee)
                found.update(a for a in answers if not (guarded and a.cause == "redis"))
        if (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value).endswith("current_app.extensions")
            and not guarded
        ):
            found.add(REDIS_ERROR)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "request"
            and node.attr in BODY_READERS
        ):
            found.add(BODY_TOO_LARGE)
        for child in ast.iter_child_nodes(node):
            self._visit(module, child, handlers, guarded, found)

    def _function(self, module: str, name: str) -> tuple[str, ast.FunctionDef] | None:
        """The function `name` names in `module`, when it is ours in relay.web."""
        source = self.imported(module).get(name, module)
        if not source.startswith("relay.web"):
            return None
        for node in self.tree(source).body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return source, node
        return None

    def _api_error(self, module: str, call: ast.Call, handlers: tuple[ast.ExceptHandler, ...]) -> set[Answer]:
        where = f"{module.rsplit('.', 1)[-1]}.py:{call.lineno}"
        args: dict[int | str | None, ast.expr] = {
            **dict(enumerate(call.args)),
            **{k.arg: k.value for k in call.keywords},
        }
        status = args.get(0, args.get("status"))
        code = args.get(1, args.get("error"))
        headers = args.get(3, args.get("headers"))
        assert isinstance(status, ast.Constant) and isinstance(status.value, int), (
            f"{where}: {ast.unparse(call)}: the status must be a literal for this test to read it"
        )
        header_names: frozenset[str] = frozenset()
        if headers is not None:
            assert isinstance(headers, ast.Dict), f"{where}: {ast.unparse(call)}: headers must be a dict literal"
            header_names = frozenset(ast.literal_eval(k) for k in headers.keys if k is not None)
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            codes = {code.value}
        else:
            codes = self._codes_of_caught(module, call, code, handlers)
        return {Answer(status.value, c, header_names, where) for c in codes}

    def _codes_of_caught(
        self, module: str, call: ast.Call, code: ast.expr | None, handlers: tuple[ast.ExceptHandler, ...]
    ) -> set[str]:
        """The codes of `ApiError(status, exc.error, ...)` in `except SomeError as exc`: every
        literal first argument SomeError is built with, in the module that defines it."""
        where = f"{module.rsplit('.', 1)[-1]}.py:{call.lineno}"
        for handler in reversed(handlers):
            if (
                isinstance(code, ast.Attribute)
                and isinstance(code.value, ast.Name)
                and code.value.id == handler.name
                and isinstance(handler.type, ast.Name)
            ):
                exception = handler.type.id
                defined_in = self.imported(module).get(exception, module)
                codes: set[str] = {
                    node.args[0].value
                    for node in ast.walk(self.tree(defined_in))
                    if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == exception
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                }
                assert codes, f"{where}: found no {exception}('<code>', ...) in {defined_in}"
                return codes
        raise AssertionError(f"{where}: {ast.unparse(call)}: cannot tell which error codes this answers with")


def input_guard_answers(scan: Scan) -> set[Answer]:
    """What reading the body can answer with besides 413: the ApiErrors of whatever relay/web puts
    in place of wsgi.input (`environ["wsgi.input"] = SomeClass(...)`), in any of its methods."""
    found: set[Answer] = set()
    for path in sorted((ROOT / "relay" / "web").glob("*.py")):
        module = f"relay.web.{path.stem}"
        tree = scan.tree(module)
        classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and any(ast.unparse(target).endswith("['wsgi.input']") for target in node.targets)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id in classes
            ):
                for method in classes[node.value.func.id].body:
                    if isinstance(method, ast.FunctionDef):
                        found.update(a._replace(cause="body") for a in scan._answers(module, method))
    return found


def view_answers(app, function: Callable) -> set[Answer]:
    """Everything `function`, the view of an endpoint, can answer with, its before_request functions included."""
    scan = Scan()
    blueprint = next(
        (name for name, bp in app.blueprints.items() if bp.import_name == function.__module__),
        None,
    )
    before = [*app.before_request_funcs.get(None, []), *app.before_request_funcs.get(blueprint, [])]
    found = {BUG, *scan.answers_of(function)}
    for hook in before:
        found.update(scan.answers_of(hook))
    if BODY_TOO_LARGE in found:
        found.update(input_guard_answers(scan))
    return found


def documented_errors(response: dict) -> set[str] | None:
    """The `error` codes a documented response names (const or enum), None when it names none."""
    schema = resolve(response).get("content", {}).get("application/json", {}).get("schema")
    codes: set[str] = set()

    def walk(node: Any) -> None:
        node = resolve(node)
        if not isinstance(node, dict):
            return
        error = node.get("properties", {}).get("error", {})
        if "const" in error:
            codes.add(error["const"])
        codes.update(error.get("enum", []))
        for sub in node.get("allOf", []):
            walk(sub)
        if "$ref" in node:
            walk(pointer(node["$ref"]))

    walk(schema)
    return codes or None


def undocumented(answers: dict[tuple[str, str], set[Answer]]) -> list[str]:
    """What in `answers` ((method, path) -> answers) the document does not list, one line each."""
    operations = documented_operations()
    problems = []
    for (method, path), found in sorted(answers.items()):
        operation = operations.get((method, path))
        if operation is None:
            continue  # test_the_apps_routes_and_the_documents_operations_are_the_same names it
        for answer in sorted(found):
            label = f"{method} {path}: {answer.status} {answer.code!r} ({answer.where})"
            response = operation["responses"].get(str(answer.status))
            if response is None:
                problems.append(f"{label}: status {answer.status} is not documented")
                continue
            response = resolve(response)
            codes = documented_errors(response)
            if codes is None or answer.code not in codes:
                problems.append(f"{label}: error {answer.code!r} is not among those documented: {sorted(codes or [])}")
            documented_headers = {name.lower() for name in response.get("headers", {})}
            problems += [
                f"{label}: header {header} is not documented"
                for header in sorted(answer.headers)
                if header.lower() not in documented_headers
            ]
    return problems


def test_every_answer_the_code_can_give_is_documented_on_its_operation(app):
    answers = {operation: view_answers(app, view) for operation, view in served_operations(app).items()}
    problems = undocumented(answers)
    assert not problems, "relay/web/openapi.yaml lacks answers the code gives:\n" + "\n".join(problems)


def test_every_documented_error_names_its_codes():
    unnamed = [
        f"{method} {path}: {status}"
        for (method, path), operation in documented_operations().items()
        for status, response in operation["responses"].items()
        if int(status) >= 400 and documented_errors(response) is None
    ]
    assert not unnamed, f"error responses without their `error` codes (const or enum): {unnamed}"


def test_the_scan_sees_what_the_code_answers_with(app):
    # So that the test above cannot pass because the scan went blind.
    served = served_operations(app)

    def seen(method: str, path: str) -> set[tuple[int, str]]:
        return {(a.status, a.code) for a in view_answers(app, served[(method, path)])}

    assert {
        (400, "invalid_body"),
        (400, "invalid_event"),
        (400, "stale_event"),
        (401, "unauthorized"),
        (404, "unknown_source"),
        (413, "payload_too_large"),
        (500, "internal_error"),
        (503, "unavailable"),
    } <= seen("POST", "/hooks/{source}")
    assert seen("GET", "/readyz") == {(503, "not_ready"), (500, "internal_error")}  # its RedisError is caught
    assert seen("GET", "/healthz") == {(500, "internal_error")}
    assert seen("POST", "/admin/dead-letters/purge") >= {
        (400, "invalid_filter"),
        (400, "invalid_request"),
        (401, "unauthorized"),
        (404, "not_found"),  # the admin API off: its before_request
        (413, "payload_too_large"),
        (500, "internal_error"),
        (503, "unavailable"),
    }
    retry_after = {a.headers for a in view_answers(app, served[("POST", "/hooks/{source}")]) if a.status == 503}
    assert retry_after == {frozenset({"Retry-After"})}


def test_a_new_status_or_code_in_the_code_is_caught():
    # A view as someone might write it next, read from text: its answers fail the check.
    source = textwrap.dedent(
        """
        from relay.web.errors import ApiError, too_large

        def view():
            if slow():
                raise ApiError(408, "request_timeout", "too slow")
            if busy():
                _refuse()
            if huge():
                raise too_large(1)
            raise ApiError(400, "duplicate_keys", "twice")

        def _refuse():
            raise ApiError(429, "too_many", "slow down", {"Retry-After": "1"})
        """
    )
    found = Scan({"relay.web.example": source}).answers_of_name("relay.web.example", "view")
    assert {(a.status, a.code, a.headers) for a in found} == {
        (408, "request_timeout", frozenset()),
        (429, "too_many", frozenset({"Retry-After"})),
        (413, "payload_too_large", frozenset()),  # through relay/web/errors.py's too_large()
        (400, "duplicate_keys", frozenset()),
    }
    problems = undocumented({("POST", "/hooks/{source}"): set(found)})
    assert [p.split(": ", 2)[2] for p in problems] == [
        "error 'duplicate_keys' is not among those documented: ['invalid_body', 'invalid_event', 'stale_event']",
        "status 429 is not documented",
    ]
