"""The folds as a Kubernetes Indexed Job, then a report Job: the kustomize manifests under ``k8s/``, rendered.

``spectra-cv k8s render`` reads the kustomize base (``k8s/base``) or an overlay (``k8s/overlays/cpu``),
applies the overlay itself — exactly the kustomize features the overlays use: ``resources``, ``images``
(``newName``/``newTag``/``digest``) and JSON6902 ``patches`` (add/remove/replace) on a target by kind
and name, no kustomize binary needed — then fills in the run: image, folds (one completion each),
parallelism, preset and ``--set`` values, claims, namespace and a name prefix. The result is plain
multi-document YAML for ``kubectl apply``.

Pod ``i`` of the folds Job runs fold ``i + 1`` (``spectra-cv fold`` reads ``JOB_COMPLETION_INDEX``).
Any other fold list (``--folds 2 4 5``) is mapped by a ``/bin/sh`` wrapper that picks the index's
entry of ``SPECTRA_CV_FOLDS`` and passes it as ``--fold``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectra_cv.errors import ConfigError
from spectra_cv.folds.manifests import N_FOLDS
from spectra_cv.log import get_logger

log = get_logger("k8s")

SOURCE = Path(__file__).resolve().parent / "kubernetes"
"""The kustomize manifests shipped with the package (the repository's ``k8s/`` links here), so that
``k8s render`` works from an installed wheel as from a checkout."""
OVERLAYS = {"base": Path("base"), "cpu": Path("overlays/cpu")}
"""``--overlay`` name → kustomization directory under the ``k8s/`` source folder."""
FOLDS_JOB = "spectra-cv-folds"
REPORT_JOB = "spectra-cv-report"
DATA_CLAIM = "spectra-cv-data"
RUN_ROOT_CLAIM = "spectra-cv-run"
FOLD_CONTAINER = "fold"
REPORT_CONTAINER = "report"
ALL_FOLDS = tuple(range(1, N_FOLDS + 1))
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_KEYS = frozenset({"apiVersion", "kind", "resources", "images", "patches"})
FOLD_MAP_SCRIPT = (
    'i=0; for f in $SPECTRA_CV_FOLDS; do if [ "$i" = "$JOB_COMPLETION_INDEX" ]; then exec "$@" --fold "$f"; fi; '
    'i=$((i+1)); done; echo "spectra-cv: no fold for JOB_COMPLETION_INDEX=$JOB_COMPLETION_INDEX in '
    'SPECTRA_CV_FOLDS=$SPECTRA_CV_FOLDS" >&2; exit 2'
)
"""``sh -c SCRIPT sh <the container's command>``: run it with ``--fold`` = the index's entry of the list."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PREFIX = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?-?)?$")


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("spectra-cv k8s needs PyYAML to read the manifests: pip install pyyaml") from None
    return yaml


@dataclass(frozen=True, kw_only=True)
class RenderSettings:
    """What ``spectra-cv k8s render`` fills into the manifests (``None``: keep the manifest's value)."""

    overlay: str = "base"
    """``base`` (GPU, the CUDA image) or ``cpu`` (k8s/overlays/cpu)."""
    image: str | None = None
    """Image of every container (and SPECTRA_CV_IMAGE, the provenance recorded per fold)."""
    folds: tuple[int, ...] = ALL_FOLDS
    """Folds to run, each once; the Job's completions."""
    parallel: int | None = None
    """Fold pods at once (the Job's parallelism; capped at the number of folds)."""
    preset: str | None = None
    sets: tuple[str, ...] = ()
    """``FLAG=VALUE`` for ``spectra-cv train`` flags (SPECTRA_CV_SET, space-separated)."""
    epochs: int | None = None
    batch_size: int | None = None
    device: str | None = None
    force: bool = False
    """Retrain completed folds (SPECTRA_CV_FORCE, SPECTRA_CV_RETRAINING_FOLDS)."""
    data_claim: str | None = None
    """An existing claim holding the data (the data claim document is then left out)."""
    run_root_claim: str | None = None
    """An existing ReadWriteMany claim for the run root (its document is then left out)."""
    namespace: str | None = None
    tracking: str | None = None
    """SPECTRA_CV_TRACKING of the fold pods (each exports itself) and the report pod (the CV run)."""
    tracking_uri: str | None = None
    """MLFLOW_TRACKING_URI of those pods: the lab's tracking server."""
    tracking_experiment: str | None = None
    """MLFLOW_EXPERIMENT_NAME of those pods."""
    name_prefix: str = ""
    """Prepended to the names of the Jobs and of the claims rendered here (two runs side by side)."""

    def __post_init__(self) -> None:
        if self.overlay not in OVERLAYS:
            raise ConfigError(f"--overlay {self.overlay!r}: choose one of {', '.join(OVERLAYS)}")
        if not self.folds:
            raise ConfigError("--folds: give at least one fold, e.g. --folds 1 2 3")
        bad = [f for f in self.folds if f not in ALL_FOLDS]
        if bad:
            raise ConfigError(f"--folds {' '.join(map(str, self.folds))}: folds are 1..{N_FOLDS}, not {bad[0]}")
        twice = sorted({f for f in self.folds if self.folds.count(f) > 1})
        if twice:
            raise ConfigError(f"--folds {' '.join(map(str, self.folds))}: fold {twice[0]} is listed twice; "
                              "list each fold once")
        for flag, value in (("--parallel", self.parallel), ("--epochs", self.epochs),
                            ("--batch-size", self.batch_size)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be >= 1; got {value}")
        for item in self.sets:
            if not item or any(ch.isspace() for ch in item):
                raise ConfigError(f"--set {item!r}: no spaces in FLAG=VALUE (the pods read the settings "
                                  "space-separated from SPECTRA_CV_SET)")
        if self.image is not None and (not self.image or any(ch.isspace() for ch in self.image)):
            raise ConfigError(f"--image {self.image!r}: expected an image reference, e.g. registry/spectra-cv:cuda")
        for flag, text in (("--tracking-uri", self.tracking_uri), ("--tracking-experiment", self.tracking_experiment)):
            if text is not None and (not text.strip() or "\n" in text):
                raise ConfigError(f"{flag} {text!r}: expected one line, e.g. http://mlflow.lab:5000")
        if self.device is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"--device {self.device!r}: use auto, cpu, cuda or cuda:N")
        for flag, name in (("--data-claim", self.data_claim), ("--run-root-claim", self.run_root_claim)):
            if name is not None and not (len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name)):
                raise ConfigError(f"{flag} {name!r} is not a valid claim name: lower-case letters, digits, '-' "
                                  "and '.', starting and ending with a letter or digit (DNS-1123), e.g. cv-data")
        if self.namespace is not None and not (len(self.namespace) <= 63 and _DNS_LABEL.fullmatch(self.namespace)):
            raise ConfigError(f"--namespace {self.namespace!r} is not a valid namespace: at most 63 lower-case "
                              "letters, digits and '-', starting and ending with a letter or digit, e.g. spectra")
        longest = max(len(FOLDS_JOB), len(REPORT_JOB))
        if not _PREFIX.fullmatch(self.name_prefix) or len(self.name_prefix) + longest > 63:
            raise ConfigError(f"--name-prefix {self.name_prefix!r}: lower-case letters, digits and '-', starting "
                              f"with a letter or digit, at most {63 - longest} characters, e.g. run2-")

    @property
    def default_folds(self) -> bool:
        """True when the folds are 1..N: the Job's index + 1 is the fold, no mapping needed."""
        return self.folds == tuple(range(1, len(self.folds) + 1))


@dataclass
class Rendered:
    """The rendered objects and the names a user needs to apply them."""

    documents: list[dict[str, Any]]
    folds_job: str
    report_job: str
    namespace: str | None
    notes: list[str] = field(default_factory=list)


# --- kustomize: the subset the overlays use ------------------------------------------------------


def kustomization_file(directory: Path) -> Path:
    """The kustomization file of ``directory`` (ConfigError naming the folder when there is none)."""
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{directory}: no kustomization.yaml here (expected one of {', '.join(KUSTOMIZATION_FILES)})")


def load_kustomization(directory: Path, _seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The objects a kustomization directory builds: its resources, then its patches, then its images."""
    directory = directory.resolve()
    if directory in _seen:
        raise ConfigError(f"{directory}: kustomization resources form a cycle")
    path = kustomization_file(directory)
    spec = _load_one(path)
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a Kustomization mapping")
    unknown = sorted(set(spec) - SUPPORTED_KEYS)
    if unknown:
        raise ConfigError(f"{path}: {', '.join(unknown)} not supported by spectra-cv k8s render (it supports "
                          f"{', '.join(sorted(SUPPORTED_KEYS - {'apiVersion', 'kind'}))}); express it as a "
                          "JSON6902 patch, or render with `kubectl kustomize`")
    docs: list[dict[str, Any]] = []
    for entry in _list(spec, "resources", path):
        target = directory / str(entry)
        if target.is_dir():
            docs += load_kustomization(target, _seen + (directory,))
        elif target.is_file():
            docs += [doc for doc in _load_all(target) if doc is not None]
        else:
            raise ConfigError(f"{path}: resource {entry!r} does not exist ({target})")
    _check_unique(docs, path)
    for number, patch in enumerate(_list(spec, "patches", path), start=1):
        apply_patch(docs, patch, directory, f"{path} patches[{number}]")
    for image in _list(spec, "images", path):
        apply_image(docs, image, f"{path} images")
    return docs


def apply_patch(docs: list[dict[str, Any]], patch: Any, directory: Path, where: str) -> None:
    """A kustomize ``patches`` entry: a JSON6902 op list applied to the objects its target names."""
    if not isinstance(patch, dict) or not isinstance(patch.get("target"), dict):
        raise ConfigError(f"{where}: expected a mapping with target (kind, name) and patch or path")
    target = patch["target"]
    extra = sorted(set(target) - {"kind", "name"})
    if extra:
        raise ConfigError(f"{where}: target {', '.join(extra)} not supported (select by kind and name)")
    if ("patch" in patch) == ("path" in patch):
        raise ConfigError(f"{where}: give either patch (inline) or path (a file), not both or neither")
    ops = _yaml().safe_load(patch["patch"]) if "patch" in patch else _load_one(directory / str(patch["path"]))
    if not isinstance(ops, list):
        raise ConfigError(f"{where}: only JSON6902 patches (a list of ops) are supported, not strategic merge")
    matched = [doc for doc in docs if all(doc.get(k) == v if k == "kind" else _name(doc) == v
                                          for k, v in target.items())]
    if not matched:
        raise ConfigError(f"{where}: target {target} matches no resource (was it renamed?)")
    for doc in matched:
        json_patch(doc, ops, where)


def json_patch(doc: dict[str, Any], ops: list[Any], where: str = "patch") -> None:
    """RFC 6902 add/remove/replace, in place (``~1`` is ``/``, ``~0`` is ``~`` in a path)."""
    for number, op in enumerate(ops, start=1):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ConfigError(f"{where} op {number}: expected {{op, path[, value]}}; got {op!r}")
        kind, pointer = op["op"], str(op["path"])
        here = f"{where} op {number} ({kind} {pointer})"
        if kind not in ("add", "remove", "replace"):
            raise ConfigError(f"{here}: op {kind!r} not supported (add, remove, replace)")
        if kind != "remove" and "value" not in op:
            raise ConfigError(f"{here}: needs a value")
        if not pointer.startswith("/"):
            raise ConfigError(f"{here}: a path starts with '/'")
        keys = [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]
        parent: Any = doc
        for key in keys[:-1]:
            parent = _step(parent, key, here)
        last, value = keys[-1], copy.deepcopy(op.get("value"))
        if isinstance(parent, list):
            if kind == "add" and last == "-":
                parent.append(value)
                continue
            index = _index(parent, last, here, allow_end=kind == "add")
            if kind == "add":
                parent.insert(index, value)
            elif kind == "remove":
                del parent[index]
            else:
                parent[index] = value
        elif isinstance(parent, dict):
            if kind != "add" and last not in parent:
                raise ConfigError(f"{here}: {last!r} is not there")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = value
        else:
            raise ConfigError(f"{here}: the parent is not a mapping or list")


def apply_image(docs: list[dict[str, Any]], image: Any, where: str) -> None:
    """A kustomize ``images`` entry: containers whose image is ``name`` get newName/newTag/digest."""
    if not isinstance(image, dict) or "name" not in image:
        raise ConfigError(f"{where}: expected {{name, newName?, newTag?, digest?}}; got {image!r}")
    extra = sorted(set(image) - {"name", "newName", "newTag", "digest"})
    if extra:
        raise ConfigError(f"{where}: {', '.join(extra)} not supported (newName, newTag, digest)")
    for container in containers(docs):
        name, tag = split_image(str(container.get("image", "")))
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        else:
            tag = f":{image['newTag']}" if "newTag" in image else tag
            container["image"] = f"{name}{tag}"


def split_image(reference: str) -> tuple[str, str]:
    """``registry:5000/spectra-cv:cuda`` → (``registry:5000/spectra-cv``, ``:cuda``); a digest stays in the tail."""
    at = reference.find("@")
    if at >= 0:
        return reference[:at], reference[at:]
    colon = reference.rfind(":")
    if colon > reference.rfind("/"):
        return reference[:colon], reference[colon:]
    return reference, ""


# --- the run's settings ---------------------------------------------------------------------------


def render(source: Path, settings: RenderSettings) -> Rendered:
    """The overlay's objects with the run's settings filled in (ConfigError naming file and fix)."""
    if not (source / "base").is_dir():
        raise ConfigError(f"--source {source}: no base/ folder there "
                          f"(expected {source / 'base' / 'kustomization.yaml'}); "
                          "run from the repository root or pass --source <repo>/k8s")
    docs = copy.deepcopy(load_kustomization(source / OVERLAYS[settings.overlay]))
    folds_job = _find(docs, "Job", FOLDS_JOB, source)
    _find(docs, "Job", REPORT_JOB, source)
    _fill_folds_job(folds_job, settings)
    _fill_tracking(docs, settings)
    for container in containers(docs):
        if settings.image is not None:
            container["image"] = settings.image
        if any(e.get("name") == "SPECTRA_CV_IMAGE" for e in container.get("env", [])):
            set_env(container, "SPECTRA_CV_IMAGE", container["image"])  # provenance = what runs
    claims = {DATA_CLAIM: settings.data_claim, RUN_ROOT_CLAIM: settings.run_root_claim}
    notes = []
    for base_name, given in claims.items():
        if given is not None:
            docs = [d for d in docs if not (d.get("kind") == "PersistentVolumeClaim" and _name(d) == base_name)]
            _rename_claims(docs, base_name, given)
            where = f" in namespace {settings.namespace}" if settings.namespace else ""
            notes.append(f"claim {given} must exist{where}")
    if settings.name_prefix:
        for doc in docs:
            old = _name(doc)
            doc["metadata"]["name"] = settings.name_prefix + old
            if doc.get("kind") == "PersistentVolumeClaim":
                _rename_claims(docs, old, settings.name_prefix + old)
    if settings.namespace is not None:
        for doc in docs:
            doc["metadata"]["namespace"] = settings.namespace
    log.debug("rendered %d objects from %s (%s)", len(docs), source, settings.overlay)
    return Rendered(documents=docs, folds_job=settings.name_prefix + FOLDS_JOB,
                    report_job=settings.name_prefix + REPORT_JOB, namespace=settings.namespace, notes=notes)


def _fill_folds_job(job: dict[str, Any], settings: RenderSettings) -> None:
    spec = job["spec"]
    n = len(settings.folds)
    spec["completions"] = n
    spec["parallelism"] = min(settings.parallel or spec.get("parallelism", n), n)
    if "maxFailedIndexes" in spec:
        spec["maxFailedIndexes"] = min(spec["maxFailedIndexes"], n)
    pod = spec["template"]["spec"]
    fold = next((c for c in pod.get("containers", []) if c.get("name") == FOLD_CONTAINER), None)
    if fold is None:
        raise ConfigError(f"Job {FOLDS_JOB}: no container named {FOLD_CONTAINER!r} (the podFailurePolicy names it)")
    for name, value in (("SPECTRA_CV_PRESET", settings.preset), ("SPECTRA_CV_DEVICE", settings.device),
                        ("SPECTRA_CV_EPOCHS", settings.epochs), ("SPECTRA_CV_BATCH_SIZE", settings.batch_size)):
        if value is not None:
            set_env(fold, name, str(value))
    if settings.sets:
        set_env(fold, "SPECTRA_CV_SET", " ".join(settings.sets))
    if settings.force:
        set_env(fold, "SPECTRA_CV_FORCE", "1")
        set_env(fold, "SPECTRA_CV_RETRAINING_FOLDS", ",".join(map(str, settings.folds)))
    if not settings.default_folds:
        set_env(fold, "SPECTRA_CV_FOLDS", " ".join(map(str, settings.folds)))
        fold["args"] = list(fold.get("command", [])) + list(fold.get("args", []))
        fold["command"] = ["/bin/sh", "-c", FOLD_MAP_SCRIPT, "sh"]


TRACKING_CONTAINERS = (FOLD_CONTAINER, REPORT_CONTAINER)
"""The containers that export runs: each fold when it ends, the report its CV run."""


def _fill_tracking(docs: list[dict[str, Any]], settings: RenderSettings) -> None:
    for container in containers(docs):
        if container.get("name") not in TRACKING_CONTAINERS:
            continue
        for name, value in (("SPECTRA_CV_TRACKING", settings.tracking), ("MLFLOW_TRACKING_URI", settings.tracking_uri),
                            ("MLFLOW_EXPERIMENT_NAME", settings.tracking_experiment)):
            if value is not None:
                set_env(container, name, value)


def set_env(container: dict[str, Any], name: str, value: str) -> None:
    """Set (or add, at the end) one plain environment variable of a container."""
    env = container.setdefault("env", [])
    for item in env:
        if item.get("name") == name:
            item.pop("valueFrom", None)
            item["value"] = value
            return
    env.append({"name": name, "value": value})


def containers(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every container and init container in the objects (wherever a pod spec sits)."""
    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from (c for c in value if isinstance(c, dict))
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for doc in docs:
        yield from walk(doc)


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The pod spec of every Job."""
    for doc in docs:
        if doc.get("kind") == "Job":
            yield doc["spec"]["template"]["spec"]


def to_yaml(rendered: Rendered, settings: RenderSettings, filename: str = "THIS_FILE") -> str:
    """Multi-document YAML with a header saying how it was made and how to apply it (as ``filename``)."""
    ns = f" -n {rendered.namespace}" if rendered.namespace else ""
    header = [
        f"# Rendered by `spectra-cv k8s render` (overlay {settings.overlay}, folds "
        f"{' '.join(map(str, settings.folds))}); apply in two steps:",
        f"#   kubectl{ns} apply -f {filename} -l app.kubernetes.io/component!=report",
        f"#   until kubectl{ns} get job/{rendered.folds_job} "
        "-o jsonpath='{.status.conditions[?(@.status==\"True\")].type}' \\",
        "#       | grep -qwE 'Complete|Failed'; do sleep 60; done",
        f"#   kubectl{ns} apply -f {filename} -l app.kubernetes.io/component=report",
        f"#   kubectl{ns} wait --for=condition=Complete job/{rendered.report_job} --timeout=30m",
    ] + [f"# Note: {note}" for note in rendered.notes]
    body = _yaml().safe_dump_all(rendered.documents, sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(header) + "\n" + body


# --- helpers --------------------------------------------------------------------------------------


def _load_all(path: Path) -> list[Any]:
    yaml = _yaml()
    try:
        return list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _load_one(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    docs = _load_all(path)
    if len(docs) != 1:
        raise ConfigError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


def _list(spec: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = spec.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: {key} must be a list")
    return value


def _name(doc: dict[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def _check_unique(docs: list[dict[str, Any]], path: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or not _name(doc):
            raise ConfigError(f"{path}: every resource needs kind and metadata.name; got {str(doc)[:80]}")
        key = (str(doc["kind"]), _name(doc))
        if key in seen:
            raise ConfigError(f"{path}: {key[0]} {key[1]} is defined twice")
        seen.add(key)


def _find(docs: list[dict[str, Any]], kind: str, name: str, source: Path) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and _name(doc) == name:
            return doc
    raise ConfigError(f"{source}: the manifests have no {kind} named {name} (spectra-cv k8s render fills it in)")


def _rename_claims(docs: list[dict[str, Any]], old: str, new: str) -> None:
    for pod in pod_specs(docs):
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim and claim.get("claimName") == old:
                claim["claimName"] = new


def _step(node: Any, key: str, here: str) -> Any:
    if isinstance(node, dict):
        if key not in node:
            raise ConfigError(f"{here}: {key!r} is not there")
        return node[key]
    if isinstance(node, list):
        return node[_index(node, key, here, allow_end=False)]
    raise ConfigError(f"{here}: {key!r} is below a scalar")


def _index(node: list[Any], key: str, here: str, allow_end: bool) -> int:
    if not key.isdigit():
        raise ConfigError(f"{here}: {key!r} is not a list index")
    index = int(key)
    if index > len(node) or (index == len(node) and not allow_end):
        raise ConfigError(f"{here}: index {index} is past the end of a list of {len(node)}")
    return index
