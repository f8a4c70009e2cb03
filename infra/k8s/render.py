"""Renders a Kustomize directory offline, for the small subset of Kustomize that infra/k8s uses,
so the tests (and an engineer without kustomize at hand) see what `kubectl apply -k` creates.

`python -m infra.k8s.render infra/k8s/overlays/production` prints the objects as YAML.

The subset (anything else in a kustomization.yaml is refused, naming the field, so nobody relies
on a feature this renderer would silently leave out):
- resources: YAML files (one or more objects) and directories holding a kustomization.yaml
- namespace: set on every namespaced object
- labels: `pairs` on every object, and on pod templates with `includeTemplates` (selectors are
  never changed: `includeSelectors` must be false)
- images: name -> newName / newTag / digest, in every container and init container
- replicas: name -> count, for Deployments and StatefulSets
- patches: `path` or `patch`, either a strategic-merge patch of a whole object (found by kind
  and name) or a JSON 6902 patch (add, remove, replace) with a `target` kind and name
- configMapGenerator / secretGenerator: name, envs, literals, files, behavior (create, merge,
  replace), type (secrets). Generated names get a content-hash suffix, as Kustomize gives them,
  and the references in pod specs follow; the suffix itself may differ from Kustomize's.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
    "configMapGenerator",
    "secretGenerator",
}
GENERATOR_FIELDS = {"name", "envs", "literals", "files", "behavior", "type"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
}
WORKLOADS_WITH_TEMPLATE = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Strategic merge: lists whose items merge by this key; every other list is replaced whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
# Marks generated objects until the top-level render gives them their hash suffix.
_GENERATED = "render.infra.grantflow/generated"


class UnsupportedKustomization(ValueError):
    """A kustomization uses something outside the subset this renderer implements."""


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl apply -k directory` would create."""
    objects = _render(Path(directory))
    renames = _apply_hash_suffixes(objects)
    for obj in objects:
        for spec in _pod_specs(obj):
            _rename_references(spec, renames)
    return objects


def _render(directory: Path) -> list[Obj]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise UnsupportedKustomization(f"{directory}: no kustomization.yaml")
    kustomization: Obj = yaml.safe_load(path.read_text()) or {}
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise UnsupportedKustomization(
            f"{path}: {', '.join(sorted(unknown))} not supported by infra/k8s/render.py "
            f"(supported: {', '.join(sorted(KUSTOMIZATION_FIELDS))})"
        )
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        target = directory / entry
        if "://" in entry or entry.startswith("github.com/"):
            raise UnsupportedKustomization(f"{path}: remote resource {entry!r}")
        if target.is_dir():
            objects += _render(target)
        else:
            objects += _load_documents(target)
    for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(field, []):
            _generate(objects, kind, generator, directory, path)
    for patch in kustomization.get("patches", []):
        _apply_patch(objects, patch, directory, path)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for label in kustomization.get("labels", []):
        _apply_labels(objects, label, path)
    for image in kustomization.get("images", []):
        _apply_image(objects, image, path)
    for replica in kustomization.get("replicas", []):
        _apply_replicas(objects, replica, path)
    return objects


def _load_documents(path: Path) -> list[Obj]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= set(doc):
            raise UnsupportedKustomization(f"{path}: not a Kubernetes object: {doc!r:.80}")
    return documents


def _find(objects: list[Obj], kind: str, name: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]


# ---------------------------------------------------------------------------- generators


def _generate(objects: list[Obj], kind: str, spec: Obj, directory: Path, path: Path) -> None:
    unknown = set(spec) - GENERATOR_FIELDS
    if unknown:
        raise UnsupportedKustomization(f"{path}: generator fields {sorted(unknown)}")
    if kind == "ConfigMap" and "type" in spec:
        raise UnsupportedKustomization(f"{path}: configMapGenerator has no type")
    data: dict[str, str] = {}
    for env_file in spec.get("envs", []):
        for number, line in enumerate((directory / env_file).read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise UnsupportedKustomization(
                    f"{directory / env_file}:{number}: KEY=VALUE expected (values are never "
                    "taken from the environment)"
                )
            key, value = line.split("=", 1)
            data[key.strip()] = value
    for literal in spec.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    for file_entry in spec.get("files", []):
        key, _, file_path = file_entry.rpartition("=")
        data[key or Path(file_path).name] = (directory / file_path).read_text()
    name = spec["name"]
    behavior = spec.get("behavior", "create")
    existing = [o for o in _find(objects, kind, name) if _GENERATED in _annotations(o)]
    if behavior == "create":
        if existing:
            raise UnsupportedKustomization(f"{path}: {kind} {name} generated twice")
        obj: Obj = {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "annotations": {_GENERATED: "true"}},
        }
        if kind == "Secret":
            obj["type"] = spec.get("type", "Opaque")
        obj["data"] = _encoded(kind, data)
        objects.append(obj)
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise UnsupportedKustomization(f"{path}: no generated {kind} {name} to {behavior}")
        target = existing[0]
        target["data"] = (target["data"] if behavior == "merge" else {}) | _encoded(kind, data)
    else:
        raise UnsupportedKustomization(f"{path}: generator behavior {behavior!r}")


def _encoded(kind: str, data: dict[str, str]) -> dict[str, str]:
    if kind == "ConfigMap":
        return dict(data)
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def _annotations(obj: Obj) -> dict[str, str]:
    annotations: dict[str, str] = obj["metadata"].get("annotations") or {}
    return annotations


def _apply_hash_suffixes(objects: list[Obj]) -> dict[tuple[str, str], str]:
    renames: dict[tuple[str, str], str] = {}
    for obj in objects:
        annotations = _annotations(obj)
        if _GENERATED not in annotations:
            continue
        del annotations[_GENERATED]
        if not annotations:
            del obj["metadata"]["annotations"]
        name = obj["metadata"]["name"]
        content: Obj = {"kind": obj["kind"], "name": name, "data": obj.get("data", {})}
        if obj["kind"] == "Secret":
            content["type"] = obj["type"]
        encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
        # Kustomize's alphabet: no vowels or digits that could spell words or read ambiguously.
        suffix = digest.translate(str.maketrans("013ae", "ghkmt"))
        obj["metadata"]["name"] = f"{name}-{suffix}"
        renames[(obj["kind"], name)] = obj["metadata"]["name"]
    return renames


def _pod_specs(obj: Obj) -> Iterator[Obj]:
    if obj["kind"] in WORKLOADS_WITH_TEMPLATE:
        yield obj["spec"]["template"]["spec"]
    elif obj["kind"] == "CronJob":
        yield obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif obj["kind"] == "Pod":
        yield obj["spec"]


def _containers(spec: Obj) -> Iterator[Obj]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def _rename_references(spec: Obj, renames: dict[tuple[str, str], str]) -> None:
    def rename(ref: Obj | None, kind: str, key: str = "name") -> None:
        if ref and (kind, ref.get(key)) in renames:
            ref[key] = renames[(kind, ref[key])]

    for container in _containers(spec):
        for source in container.get("envFrom", []):
            rename(source.get("configMapRef"), "ConfigMap")
            rename(source.get("secretRef"), "Secret")
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom") or {}
            rename(value_from.get("configMapKeyRef"), "ConfigMap")
            rename(value_from.get("secretKeyRef"), "Secret")
    for volume in spec.get("volumes", []):
        rename(volume.get("configMap"), "ConfigMap")
        rename(volume.get("secret"), "Secret", "secretName")
        for source in (volume.get("projected") or {}).get("sources", []):
            rename(source.get("configMap"), "ConfigMap")
            rename(source.get("secret"), "Secret")


# ---------------------------------------------------------------------------- transformers


def _apply_labels(objects: list[Obj], label: Obj, path: Path) -> None:
    unknown = set(label) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown or label.get("includeSelectors", False):
        raise UnsupportedKustomization(
            f"{path}: labels support pairs and includeTemplates; includeSelectors must be false"
        )
    pairs: dict[str, str] = label["pairs"]
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        if label.get("includeTemplates", False):
            template = _template(obj)
            if template is not None:
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _template(obj: Obj) -> Obj | None:
    if obj["kind"] in WORKLOADS_WITH_TEMPLATE:
        template: Obj = obj["spec"]["template"]
        return template
    if obj["kind"] == "CronJob":
        job_template: Obj = obj["spec"]["jobTemplate"]["spec"]["template"]
        return job_template
    return None


def _split_image(image: str) -> tuple[str, str]:
    """name and what follows it (":tag", "@digest" or "")."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _apply_image(objects: list[Obj], image: Obj, path: Path) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise UnsupportedKustomization(f"{path}: image fields {sorted(unknown)}")
    for obj in objects:
        for spec in _pod_specs(obj):
            for container in _containers(spec):
                name, rest = _split_image(container["image"])
                if name != image["name"]:
                    continue
                if "digest" in image:
                    rest = "@" + image["digest"]
                elif "newTag" in image:
                    rest = ":" + str(image["newTag"])
                container["image"] = image.get("newName", name) + rest


def _apply_replicas(objects: list[Obj], replica: Obj, path: Path) -> None:
    targets = [
        o
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == replica["name"]
    ]
    if set(replica) != {"name", "count"} or not targets:
        raise UnsupportedKustomization(f"{path}: replicas entry {replica} matches nothing")
    for obj in targets:
        obj["spec"]["replicas"] = replica["count"]


# ---------------------------------------------------------------------------- patches


def _apply_patch(objects: list[Obj], entry: Obj, directory: Path, path: Path) -> None:
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown or ("path" in entry) == ("patch" in entry):
        raise UnsupportedKustomization(
            f"{path}: a patch has exactly one of path and patch, and an optional target"
        )
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if len(documents) != 1:
        raise UnsupportedKustomization(f"{path}: one patch per file or entry")
    patch = documents[0]
    target = entry.get("target")
    if target is not None:
        if set(target) - {"kind", "name", "group", "version"} or not {"kind", "name"} <= set(
            target
        ):
            raise UnsupportedKustomization(f"{path}: a target names kind and name (only)")
        matched = _find(objects, target["kind"], target["name"])
    else:
        if not isinstance(patch, dict):
            raise UnsupportedKustomization(f"{path}: a JSON 6902 patch needs a target")
        matched = _find(objects, patch["kind"], patch["metadata"]["name"])
    if not matched:
        raise UnsupportedKustomization(f"{path}: patch {entry} matches no object")
    for obj in matched:
        if isinstance(patch, list):
            _json6902(obj, patch, path)
        else:
            merged = _strategic_merge(obj, patch, path)
            obj.clear()
            obj.update(merged)


def _strategic_merge(base: Any, patch: Any, path: Path, field: str = "") -> Any:
    if isinstance(patch, dict) and isinstance(base, dict):
        result = copy.deepcopy(base)
        for key, value in patch.items():
            if key.startswith("$"):
                raise UnsupportedKustomization(f"{path}: patch directive {key} not supported")
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = _strategic_merge(result[key], value, path, key)
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(patch, list) and isinstance(base, list):
        key = _list_merge_key(field, base + patch)
        if key is None:
            return copy.deepcopy(patch)
        merged = copy.deepcopy(base)
        for item in patch:
            same = [i for i, old in enumerate(merged) if old.get(key) == item.get(key)]
            if same:
                merged[same[0]] = _strategic_merge(merged[same[0]], item, path)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _list_merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports" and items and all(isinstance(i, dict) for i in items):
        return "containerPort" if "containerPort" in items[0] else "port"
    return MERGE_KEYS.get(field)


def _json6902(obj: Obj, operations: list[Obj], path: Path) -> None:
    for operation in operations:
        op = operation.get("op")
        if op not in ("add", "remove", "replace"):
            raise UnsupportedKustomization(f"{path}: JSON 6902 op {op!r} not supported")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "remove":
                del parent[index]
            else:
                parent[index] = copy.deepcopy(operation["value"])
        else:
            if op in ("remove", "replace") and last not in parent:
                raise UnsupportedKustomization(f"{path}: {op} of missing {operation['path']}")
            if op == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(operation["value"])


def dump(objects: list[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, width=100)


def main(argv: list[str] | None = None, out: Callable[[str], object] = sys.stdout.write) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("用法 / usage: python -m infra.k8s.render <kustomization directory>", file=sys.stderr)
        return 2
    try:
        out(dump(render(Path(args[0]))))
    except UnsupportedKustomization as exc:
        print(f"无法渲染 / cannot render: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
