"""The one command grammar of ``%amlmm``/``%%amlmm`` and the ``amlmm`` command line.

An argparse tree (``prog="amlmm"``) built from :data:`COMMANDS`. argparse never exits or
prints here: a bad line raises :class:`AmlmmUsageError` with argparse's one line, and ``-h``
raises :class:`HelpRequested` carrying the help text. Lines are split with :func:`shlex.split`,
so quotes work and ``$x``/``{x}`` are never expanded. The manual (``%amlmm?``), the help of
each command and the completion data all come from the same tree.
"""

from __future__ import annotations

import argparse
import difflib
import keyword
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NoReturn

from amlmm_magics.errors import AmlmmUsageError

PROG = "amlmm"
WIDTH = 100  # fixed, so help and errors read the same in every terminal and notebook
CREDENTIALS = ("default", "cli", "device-code", "environment", "managed-identity", "token")
MODEL_FORMATS = ("joblib", "cloudpickle")
KEY_TYPES = ("primary", "secondary")


class HelpRequested(Exception):
    """``-h``/``--help`` on a line: the caller shows ``text`` instead of running anything."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# -- value types: their messages follow argparse's "argument --x: <message>" -----------------

def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def whole_number(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds (0 or more), not {text!r}")
    return value


def percent(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 100, not {text!r}")
    return int(text)


def python_name(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Python variable name")
    return text


# -- the parser ----------------------------------------------------------------------------------

class _HelpAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> NoReturn:
        raise HelpRequested(help_text_of(parser))


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=WIDTH, max_help_position=34)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting."""

    def __init__(self, *args: Any, example: str = "", cell: str = "", **kw: Any) -> None:
        kw.setdefault("add_help", False)
        kw.setdefault("allow_abbrev", False)  # --name never silently means --names
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)
        self.example = example
        self.cell = cell
        self.add_argument("-h", "--help", action=_HelpAction, help=argparse.SUPPRESS)

    def error(self, message: str) -> NoReturn:
        raise AmlmmUsageError(f"{self.prog}: error: {message}", usage=self.format_usage())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise AmlmmUsageError((message or f"{self.prog}: error").strip())

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(c) for c in choices]
        if isinstance(action, argparse._SubParsersAction):
            close = difflib.get_close_matches(str(value), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise argparse.ArgumentError(
                None, f"unknown command {value!r}{hint} (choose from {', '.join(names)})")
        raise argparse.ArgumentError(
            action, f"invalid choice {value!r} (choose from {', '.join(names)})")


def help_text_of(parser: argparse.ArgumentParser) -> str:
    text = parser.format_help().rstrip()
    cell = getattr(parser, "cell", "")
    example = getattr(parser, "example", "")
    if cell:
        text += f"\n\ncell body (%%amlmm): {cell}"
    if example:
        text += "\n\nexample:\n" + "\n".join(f"  {line}" for line in example.splitlines())
    return text


# -- the commands ----------------------------------------------------------------------------

Adder = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    summary: str
    example: str
    add: Adder
    cell: str = ""  # what the body of a %%amlmm cell means for this command


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="VAR", type=python_name,
                   help="store the result in the notebook variable VAR (notebook only)")


def _listing(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--top", metavar="K", type=positive_int,
                       help="show the first K (default: the 'top' setting, 20)")
    group.add_argument("--all", action="store_true", help="show all of them")
    _output(p)


def _waiting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true",
                   help="return at once with the operation (a poller) instead of waiting")
    p.add_argument("--timeout", metavar="S", type=seconds,
                   help="stop waiting after S seconds (default: the 'timeout' setting; 0 = none)")


def _ref(p: argparse.ArgumentParser, what: str, metavar: str = "ID") -> None:
    p.add_argument("ref", metavar=metavar, help=f"the {what}: its ID, name or name:version")


def _connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local", action="store_true",
                   help="the embedded backend (the default when no Azure setting is given)")
    p.add_argument("--url", metavar="URL", help="the account's service root (Azure)")
    p.add_argument("--subscription", metavar="ID", help="Azure subscription ID")
    p.add_argument("--resource-group", metavar="RG", help="Azure resource group")
    p.add_argument("--account", metavar="NAME", help="Model Management account name")
    p.add_argument("--api-version", metavar="V", help="API version (2017-09-01-preview)")
    p.add_argument("--credential", choices=CREDENTIALS, metavar="KIND",
                   help=f"how to sign in: {'|'.join(CREDENTIALS)}; token = $AMLMM_ACCESS_TOKEN")
    p.add_argument("--storage-sas-url-env", metavar="VAR",
                   help="NAME of the environment variable holding the container SAS URL")


def _nothing(p: argparse.ArgumentParser) -> None:
    _output(p)


def _model_register(p: argparse.ArgumentParser) -> None:
    p.add_argument("var", metavar="VAR", nargs="?",
                   help="the object to register: a variable or expression of the notebook")
    p.add_argument("--path", metavar="FILE_OR_DIR", help="register a file, or a folder (packed)")
    p.add_argument("--var", dest="cell_var", metavar="VAR",
                   help="with a cell: run the cell, then register VAR")
    p.add_argument("--name", metavar="N", required=True, help="the model's name")
    p.add_argument("--description", metavar="D", help="a description")
    p.add_argument("--tag", metavar="T", action="append", default=[], help="a tag (repeatable)")
    p.add_argument("--format", choices=MODEL_FORMATS, metavar="FORMAT",
                   help="joblib|cloudpickle (default: chosen for the object)")
    _output(p)


def _model_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="N", help="only models with this name")
    p.add_argument("--tag", metavar="T", help="only models with this tag")
    _listing(p)


def _show(what: str, metavar: str = "ID") -> Adder:
    def add(p: argparse.ArgumentParser) -> None:
        _ref(p, what, metavar)
        _output(p)
    return add


def _manifest_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="N", required=True, help="the manifest's name")
    p.add_argument("--model", metavar="REF", action="append", default=[],
                   help="a model: ID_OR_NAME[:VERSION][=GLOBAL] (repeatable); =GLOBAL binds "
                        "the notebook global the run function uses")
    p.add_argument("--run", metavar="FUNC", help="the notebook's scoring function (else: cell)")
    p.add_argument("--init", metavar="FUNC", help="a notebook function init() calls (with --run)")
    p.add_argument("--driver", metavar="FILE",
                   help="the driver program from a file (instead of a cell body)")
    p.add_argument("--sample-input", metavar="VAR",
                   help="sample input (VAR, or @FILE.json): gives the schema")
    p.add_argument("--requirements", metavar="auto|FILE", default="auto",
                   help="pip requirements: inferred (auto) or a requirements file")
    p.add_argument("--description", metavar="D", help="a description")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", default=None,
                   help="run init() and run(sample) in a fresh process first (default: setting)")
    p.add_argument("--no-dry-run", dest="dry_run", action="store_false",
                   help="skip the dry run")
    _output(p)


def _manifest_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="N", help="only manifests with this name")
    p.add_argument("--model", metavar="REF", help="only manifests using this model")
    _listing(p)


def _image_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="N", required=True, help="the image's name")
    p.add_argument("--manifest", metavar="ID", required=True, help="the manifest (ID or name)")
    p.add_argument("--compute-resource", metavar="ID",
                   help="where to build (default on the embedded backend: local)")
    p.add_argument("--description", metavar="D", help="a description")
    _waiting(p)
    _output(p)


def _image_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", metavar="REF", help="only images of this manifest")
    p.add_argument("--name", metavar="N", help="only images with this name")
    _listing(p)


def _tail(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument("--tail", metavar="N", type=positive_int, default=default,
                   help=f"the last N lines (default {default})")


def _image_log(p: argparse.ArgumentParser) -> None:
    _ref(p, "image")
    _tail(p, 200)
    _output(p)


def _scaling(p: argparse.ArgumentParser, update: bool) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--replicas", metavar="K", type=positive_int, help="number of replicas")
    group.add_argument("--autoscale", action="store_true", default=None,
                       help="scale between --min-replicas and --max-replicas")
    p.add_argument("--min-replicas", metavar="A", type=positive_int, help="with --autoscale")
    p.add_argument("--max-replicas", metavar="B", type=positive_int, help="with --autoscale")
    p.add_argument("--target-utilization", metavar="P", type=percent,
                   help="with --autoscale: target utilization in percent")
    p.add_argument("--refresh-period", metavar="S", type=positive_int,
                   help="with --autoscale: seconds between scaling decisions")
    p.add_argument("--cpu", metavar="C", help="CPU reservation, e.g. 0.5 or 250m")
    p.add_argument("--memory", metavar="M", help="memory reservation, e.g. 512Mi")
    p.add_argument("--max-concurrent-requests", metavar="K", type=positive_int,
                   help="requests a replica serves at once")
    for flag, what in (("app-insights", "log requests (Application Insights)"),
                       ("collect-data", "record inputs and outputs")):
        dest = flag.replace("-", "_")
        p.add_argument(f"--{flag}", dest=dest, action="store_true", default=None, help=what)
        if update:
            p.add_argument(f"--no-{flag}", dest=dest, action="store_false",
                           help=f"stop: {what}")


def _service_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="N", required=True,
                   help="the service's name (a DNS label: a-z, 0-9, '-')")
    p.add_argument("--image", metavar="ID", required=True, help="the image (ID or name)")
    _scaling(p, update=False)
    p.add_argument("--compute-resource", metavar="ID",
                   help="where to run (default on the embedded backend: local)")
    _waiting(p)
    _output(p)


def _service_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", metavar="N", help="only the service with this name")
    p.add_argument("--image", metavar="REF", help="only services of this image")
    p.add_argument("--model", metavar="REF", help="only services using this model")
    p.add_argument("--manifest", metavar="REF", help="only services of this manifest")
    _listing(p)


def _service_update(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")
    p.add_argument("--image", metavar="ID", help="deploy this image (ID or name)")
    _scaling(p, update=True)
    _waiting(p)
    _output(p)


def _service_delete(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")


def _service_keys(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")
    p.add_argument("--show", action="store_true", help="show the keys unmasked")
    _output(p)


def _service_regenerate(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")
    p.add_argument("--key", choices=KEY_TYPES, required=True, metavar="primary|secondary",
                   help="which key to replace")
    p.add_argument("--show", action="store_true", help="show the keys unmasked")
    _output(p)


def _service_logs(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")
    _tail(p, 100)
    _output(p)


def _service_data(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")
    p.add_argument("--top", metavar="K", type=positive_int,
                   help="the last K records (default: the 'top' setting, 20)")
    _output(p)


def _service_score(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")
    p.add_argument("var", metavar="VAR", nargs="?",
                   help="the input: a variable or expression of the notebook")
    p.add_argument("--data", metavar="JSON",
                   help="the input as JSON, @FILE for a JSON file, or - for standard input")
    p.add_argument("--timeout", metavar="S", type=seconds, default=60.0,
                   help="seconds to wait for the answer (default 60; 0 = no limit)")
    _output(p)


def _deployment_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service-id", metavar="ID", help="only deployments of this service (or name)")
    _listing(p)


def _operation_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="ID", help="the operation's ID")
    p.add_argument("--timeout", metavar="S", type=seconds,
                   help="stop waiting after S seconds (default: the 'timeout' setting; 0 = none)")
    _output(p)


def _compute_add(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="the compute resource's name")
    p.add_argument("--ray", metavar="DASHBOARD_URL", required=True,
                   help="a Ray cluster's dashboard address, e.g. http://head:8265")
    p.add_argument("--serve-url", metavar="URL",
                   help="where Serve's HTTP proxy answers (default: the dashboard's host, "
                        "port 8000)")
    p.add_argument("--token-env", metavar="VAR",
                   help="NAME of the environment variable holding the cluster's token")
    _output(p)


def _compute_remove(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="the compute resource's name")


def _service_export(p: argparse.ArgumentParser) -> None:
    _ref(p, "service", "ID|NAME")
    p.add_argument("--kubernetes", metavar="DIR", required=True,
                   help="write Kubernetes manifests (Deployment, Service, HPA, Secret) here")
    p.add_argument("--image-ref", metavar="REF",
                   help="the image reference the cluster pulls (build and push it first)")


def _help(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic", metavar="COMMAND", nargs="*", help="e.g. model register")


GROUPS: dict[str, str] = {
    "local": "the embedded backend's daemon",
    "model": "models: files of a trained model",
    "manifest": "manifests: a driver program, its models, schema and requirements",
    "image": "images: a built, deployable manifest",
    "service": "services: key-protected scoring web services",
    "deployment": "deployments: the history of a service's images",
    "operation": "operations: image builds and service creations or updates",
    "compute": "compute resources: where services run (local, or Ray clusters)",
}

COMMANDS: tuple[Command, ...] = (
    Command(("connect",), "connect to the embedded backend (default) or an Azure account",
            "%amlmm connect\n%amlmm connect --url https://eastus2.modelmanagement.azureml.net "
            "--subscription SUB --resource-group RG --account ACC --credential device-code",
            _connect),
    Command(("status",), "backend, account, identity (masked) and versions",
            "%amlmm status", _nothing),
    Command(("config",), "every setting, its value and where it comes from",
            "%amlmm config", _nothing),
    Command(("local", "start"), "start the embedded backend (if not running)",
            "%amlmm local start", _nothing),
    Command(("local", "stop"), "stop the embedded backend and its services",
            "%amlmm local stop", _nothing),
    Command(("local", "status"), "whether the embedded backend runs, and where",
            "%amlmm local status", _nothing),
    Command(("model", "register"), "register a notebook object, a file or a folder as a model",
            "%amlmm model register clf --name iris --tag team=ds\n"
            "%amlmm model register --path model.joblib --name iris",
            _model_register, cell="runs the cell, then registers --var VAR"),
    Command(("model", "list"), "models as a DataFrame",
            "%amlmm model list --name iris", _model_list),
    Command(("model", "show"), "one model", "%amlmm model show iris:2", _show("model")),
    Command(("manifest", "create"),
            "a driver (cell body, or --run FUNC), its models, schema and requirements; "
            "checked by a dry run before anything is registered",
            "%amlmm manifest create --name iris-mf --model iris --run score "
            "--sample-input X[:2]",
            _manifest_create, cell="the driver program: defines run(input) and maybe init()"),
    Command(("manifest", "list"), "manifests as a DataFrame",
            "%amlmm manifest list --model iris", _manifest_list),
    Command(("manifest", "show"), "one manifest", "%amlmm manifest show iris-mf",
            _show("manifest")),
    Command(("image", "create"), "build an image from a manifest (waits, with progress)",
            "%amlmm image create --name iris-img --manifest iris-mf", _image_create),
    Command(("image", "list"), "images as a DataFrame", "%amlmm image list --manifest iris-mf",
            _image_list),
    Command(("image", "show"), "one image", "%amlmm image show iris-img", _show("image")),
    Command(("image", "log"), "an image's build log", "%amlmm image log iris-img --tail 50",
            _image_log),
    Command(("service", "create"), "deploy an image as a scoring web service (waits)",
            "%amlmm service create --name iris-svc --image iris-img --replicas 2",
            _service_create),
    Command(("service", "list"), "services as a DataFrame", "%amlmm service list",
            _service_list),
    Command(("service", "show"), "one service", "%amlmm service show iris-svc",
            _show("service", "ID|NAME")),
    Command(("service", "update"), "a new image or new settings for a service (waits)",
            "%amlmm service update iris-svc --image iris-img:2", _service_update),
    Command(("service", "delete"), "delete a service (deleting twice is fine)",
            "%amlmm service delete iris-svc", _service_delete),
    Command(("service", "keys"), "a service's keys (masked unless --show)",
            "keys = %amlmm service keys iris-svc", _service_keys),
    Command(("service", "regenerate-key"), "replace a service's primary or secondary key",
            "%amlmm service regenerate-key iris-svc --key secondary", _service_regenerate),
    Command(("service", "usage"), "ready-to-run curl and Python snippets to call a service",
            "%amlmm service usage iris-svc", _service_keys),
    Command(("service", "logs"), "the last lines of a service's log",
            "%amlmm service logs iris-svc --tail 20", _service_logs),
    Command(("service", "score"), "send one request to a service; answers the decoded result",
            "%amlmm service score iris-svc X[:3]\n%amlmm service score iris-svc --data "
            "'[[5.1, 3.5, 1.4, 0.2]]'",
            _service_score, cell="the request body, as JSON"),
    Command(("service", "data"), "what data collection recorded, as a DataFrame",
            "inputs = %amlmm service data iris-svc --top 100", _service_data),
    Command(("service", "export"), "Kubernetes manifests for a service (keys in a Secret)",
            "%amlmm service export iris-svc --kubernetes k8s/ --image-ref "
            "registry.example/iris:1", _service_export),
    Command(("deployment", "list"), "deployments as a DataFrame",
            "%amlmm deployment list --service-id iris-svc", _deployment_list),
    Command(("deployment", "show"), "one deployment", "%amlmm deployment show ID",
            _show("deployment")),
    Command(("operation", "show"), "one operation", "%amlmm operation show ID",
            _show("operation")),
    Command(("operation", "wait"), "wait for an operation (again, e.g. after Ctrl-C)",
            "%amlmm operation wait ID --timeout 600", _operation_wait),
    Command(("compute", "add"), "register a Ray cluster (by its dashboard address)",
            "%amlmm compute add ray1 --ray http://head:8265 --token-env RAY_TOKEN",
            _compute_add),
    Command(("compute", "list"), "compute resources, and the services running on each",
            "%amlmm compute list", _nothing),
    Command(("compute", "remove"), "forget a Ray cluster (once no service runs there)",
            "%amlmm compute remove ray1", _compute_remove),
    Command(("panel",), "the dashboard: every resource in tabs, service actions (widgets)",
            "%amlmm panel", _nothing),
    Command(("help",), "the manual, or the help of one command",
            "%amlmm help service create", _help),
)


@dataclass
class Grammar:
    parser: Parser
    parsers: dict[tuple[str, ...], Parser]
    commands: dict[tuple[str, ...], Command]

    def children(self, path: tuple[str, ...]) -> list[str]:
        """Sub-commands under ``path`` (``()`` for the top level)."""
        return sorted({p[len(path)] for p in self.parsers if len(p) > len(path)
                       and p[:len(path)] == path})

    def options(self, path: tuple[str, ...]) -> list[str]:
        parser = self.parsers.get(path)
        if parser is None or path not in self.commands:
            return []
        return sorted(o for a in parser._actions for o in a.option_strings
                      if o.startswith("--") and a.help is not argparse.SUPPRESS)

    def _action(self, path: tuple[str, ...], option: str) -> argparse.Action | None:
        parser = self.parsers.get(path)
        for action in parser._actions if parser else []:
            if option in action.option_strings:
                return action
        return None

    def takes_value(self, path: tuple[str, ...], option: str) -> bool:
        action = self._action(path, option)
        return action is not None and action.nargs != 0

    def choices(self, path: tuple[str, ...], option: str) -> list[str]:
        action = self._action(path, option)
        return [str(c) for c in action.choices] if action and action.choices else []


@cache
def grammar() -> Grammar:
    root = Parser(prog=PROG, description="From the model in your notebook to a scored web "
                  "service (Azure ML Model Management API, or the embedded backend).")
    top = root.add_subparsers(dest="_group", metavar="COMMAND", parser_class=Parser)
    top.required = True
    parsers: dict[tuple[str, ...], Parser] = {(): root}
    groups: dict[str, Any] = {}
    for command in COMMANDS:
        head, *rest = command.path
        if not rest:
            leaf = top.add_parser(head, help=command.summary, description=command.summary,
                                  example=command.example, cell=command.cell)
        else:
            if head not in groups:
                group_parser = top.add_parser(head, help=GROUPS[head], description=GROUPS[head])
                parsers[(head,)] = group_parser
                groups[head] = group_parser.add_subparsers(dest="_action", metavar="ACTION",
                                                           parser_class=Parser)
                groups[head].required = True
            leaf = groups[head].add_parser(rest[0], help=command.summary,
                                           description=command.summary,
                                           example=command.example, cell=command.cell)
        command.add(leaf)
        leaf.set_defaults(_path=command.path)
        parsers[command.path] = leaf
    return Grammar(root, parsers, {c.path: c for c in COMMANDS})


def split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise AmlmmUsageError(f"{PROG}: error: cannot split the line: {exc}") from None


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command; raises :class:`AmlmmUsageError` or :class:`HelpRequested`."""
    g = grammar()
    argv = list(argv)
    if len(argv) == 1 and argv[0] in GROUPS:
        # argparse would say "required: ACTION"; say which actions there are.
        actions = ", ".join(g.children((argv[0],)))
        raise AmlmmUsageError(f"{PROG} {argv[0]}: error: missing action (choose from {actions})",
                              usage=g.parsers[(argv[0],)].format_usage())
    args, extras = g.parser.parse_known_args(argv)
    if extras:
        # argparse reports these on the root parser; the command's own prog says more.
        parser = g.parsers[args._path]
        secret = next((e for e in extras if _SECRET_OPTION_RE.match(e)), None)
        if secret is not None:
            # Never echo the value: it would stay in the cell's output and the history.
            parser.error(f"{secret.split('=', 1)[0]} is not an option, and secrets are never "
                         "given as arguments: put a token in AMLMM_ACCESS_TOKEN, a SAS URL in "
                         "a variable named by --storage-sas-url-env")
        hint = ""
        if getattr(args, "var", None) and not extras[0].startswith("-"):
            # `score svc X[[0, 1]]`: shlex split the expression at its spaces.
            hint = (f"; an expression with spaces needs quotes: "
                    f"\"{' '.join([args.var, *extras])}\"")
        parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    return args


_SECRET_OPTION_RE = re.compile(r"^--?[\w-]*(token|key|secret|password|sas|credential-)",
                               re.IGNORECASE)


def usage_line(path: tuple[str, ...], prefix: str = "%amlmm") -> str:
    usage = grammar().parsers[path].format_usage().strip()
    usage = usage.removeprefix("usage: ").removeprefix(PROG)
    return prefix + " " + " ".join(usage.split())


def help_text(topic: Sequence[str]) -> str:
    """The help of the command ``topic`` names (``[]``: the manual)."""
    if not topic:
        return manual()
    g = grammar()
    path = tuple(topic)
    if path in g.parsers and path:
        return help_text_of(g.parsers[path])
    raise AmlmmUsageError(f"{PROG} help: error: unknown command {' '.join(topic)!r} "
                          f"(choose from {', '.join(' '.join(p) for p in g.commands)})")


_MAGIC_RE = re.compile(r"(?:\b[A-Za-z_]\w* = )?%%?amlmm\b")


def for_terminal(text: str) -> str:
    """Help and hints written for the magics, as terminal commands (``amlmm ...``)."""
    return _MAGIC_RE.sub(PROG, text)


def reference_markdown() -> str:
    """The README's magic reference, generated from the grammar (a test keeps them equal)."""
    from amlmm_magics.commands.settings import SETTINGS

    lines = ["| command | what it does |", "|---|---|"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    for command in COMMANDS:
        lines.append(f"| `{' '.join(command.path)}` | {cell(command.summary)} |")
    for command in COMMANDS:
        lines += ["", f"### `%amlmm {' '.join(command.path)}`", "", command.summary + ".",
                  "", "```", usage_line(command.path), "```"]
        if command.cell:
            lines += ["", f"Cell body (`%%amlmm`): {command.cell}."]
        lines += ["", "Example:", "", "```", *command.example.splitlines(), "```"]
    lines += ["", "### Settings", "",
              "`%config AmlmmMagics.NAME = VALUE`, or the environment variable `AMLMM_NAME`; "
              "`%amlmm config` shows each value and where it comes from.", "",
              "| setting | default | meaning |", "|---|---|---|"]
    for spec in SETTINGS:
        lines.append(f"| `{spec.name}` | `{spec.default!r}` | {cell(spec.help)} |")
    return "\n".join(lines) + "\n"


@cache
def manual(terminal: bool = False) -> str:
    """``%amlmm?``: every command's usage and an example, then the settings. With
    ``terminal``: the same for the ``amlmm`` command line."""
    from amlmm_magics.commands.settings import SETTINGS

    lines = [
        "",
        "From the model in your notebook to a key-protected scoring web service. Options go "
        "on the line, data in the cell body. VAR is a variable or expression of the notebook; "
        "wherever an ID is expected a name (its latest version) or name:version works. "
        "Listings are DataFrames; `x = %amlmm ...` or `-o x` keeps a result. Long operations "
        "wait with progress; Ctrl-C stops waiting, not the operation.",
        "",
        "Commands:",
    ]
    for command in COMMANDS:
        lines.append("")
        lines.append(f"  {' '.join(command.path)}: {command.summary}")
        lines.append(f"    {usage_line(command.path)}")
        if command.cell:
            lines.append(f"    cell body (%%amlmm): {command.cell}")
        for example in command.example.splitlines():
            lines.append(f"    e.g. {example}")
    lines += ["", "Help on one command: %amlmm help model register (or -h on any command line)."]
    body = "\n".join(lines)
    if terminal:
        head = ["amlmm COMMAND ...  (in a notebook: %amlmm COMMAND ..., or %%amlmm COMMAND ... "
                "with data in the cell body)"]
        body = for_terminal(body)
        settings = "Settings (environment variables AMLMM_NAME; `amlmm config` shows them):"
    else:
        head = ["%amlmm COMMAND ...   (a line)", "%%amlmm COMMAND ...  (a cell: the body is data)"]
        settings = ("Settings (%config AmlmmMagics.NAME = VALUE, or the environment variable "
                    "AMLMM_NAME; `%amlmm config` shows them):")
    tail = ["", settings, *(f"  {spec.name} ({spec.default!r}): {spec.help}"
                           for spec in SETTINGS)]
    return "\n".join([*head, body, *tail])
