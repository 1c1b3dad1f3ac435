"""The cluster configs in cluster/: the launcher configs are valid against the schema that ships with
Ray; the KubeRay manifests give GPUs to the workers, mount one shared results volume on every pod,
and run `rbc-ray sweep` then `rbc-ray analyse` with flags the CLI accepts (no cluster needed)."""

import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from rbc_ray.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
REPO_IN_IMAGE = "/home/ray/rbc-ray"  # cluster/Dockerfile: COPY and WORKDIR
RESULTS_IN_IMAGE = f"{REPO_IN_IMAGE}/results"


def launcher_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_configs_are_valid_and_have_gpu_workers(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(config, launcher_schema())
    assert config["provider"]["type"] == name.split(".")[0]
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert workers and all(w["max_workers"] >= 1 for w in workers.values())
    if name == "gcp.yaml":  # GCP does not fill in a node type's resources: the GPU must be declared
        assert all(w["resources"].get("GPU", 0) >= 1 for w in workers.values())
        assert all(w["node_config"]["guestAccelerators"] for w in workers.values())
    # the shared results folder is the repo's results/ in the container on every node
    assert f"/mnt/rbc-results:{RESULTS_IN_IMAGE}" in " ".join(config["docker"]["run_options"])


def test_launcher_schema_rejects_a_broken_config():
    config = yaml.safe_load((CLUSTER / "gcp.yaml").read_text())
    config["docker"]["no_such_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, launcher_schema())


def pod_specs(manifest: dict) -> tuple[dict, list[dict]]:
    spec = manifest["spec"].get("rayClusterSpec", manifest["spec"])
    return spec["headGroupSpec"]["template"]["spec"], [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


@pytest.mark.parametrize("name", ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"])
def test_kuberay_workers_request_gpus_and_every_pod_mounts_the_shared_results(name):
    manifest = yaml.safe_load((CLUSTER / name).read_text())
    claim = yaml.safe_load((CLUSTER / "kuberay-storage.yaml").read_text())
    assert claim["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in claim["spec"]["accessModes"]
    head, workers = pod_specs(manifest)
    assert workers
    for pod in workers:
        for c in pod["containers"]:
            assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    for pod in [head, *workers]:
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            volume = volumes[mounts[RESULTS_IN_IMAGE]]
            assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_the_rayjob_sweeps_on_gpus_then_analyses_the_sweep():
    manifest = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    steps = [shlex.split(part) for part in manifest["spec"]["entrypoint"].split("&&")]
    assert steps[0] == ["cd", REPO_IN_IMAGE]
    assert [s[:2] for s in steps[1:]] == [["rbc-ray", "sweep"], ["rbc-ray", "analyse"]]
    parser = build_parser()
    sweep, analyse = (parser.parse_args(s[1:]) for s in steps[1:])  # flags the CLI accepts
    assert (ROOT / sweep.config).exists()
    assert sweep.address == analyse.address == "auto"
    assert "train.device=cuda" in sweep.set and 0 < sweep.gpus_per_trial <= 1
    assert "br.device=cuda" in analyse.set and 0 < analyse.gpus_per_trial <= 1
    assert analyse.runs == [sweep.out] and analyse.checkpoints == "mid,end"
    for out in (sweep.out, analyse.out):  # on the shared volume
        assert (Path(REPO_IN_IMAGE) / out).is_relative_to(RESULTS_IN_IMAGE)
