"""URDF preparation for fast, equivalent physics.

* Fixed joints are merged at load time (``URDF_MERGE_FIXED_LINKS``): a rigid chain of links is
  one rigid body, so the dynamics are the same with fewer Featherstone links.
* A *blocked* gripper (tasks that keep it closed, as panda-gym does for Reach and Push) is
  frozen: its joints become fixed (at their zero position) and merge into the wrist.

Merged links disappear from PyBullet's link list, so this module also computes, from the URDF
itself, which surviving link carries each original link and the fixed transform between them.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pybullet as p

Transform = tuple[tuple[float, float, float], tuple[float, float, float, float]]
IDENTITY: Transform = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))


@dataclass(frozen=True)
class LinkTree:
    """For each URDF link: the surviving (not merged) link and the transform link-in-survivor."""

    root: str
    survivor: dict[str, str]
    in_survivor: dict[str, Transform]


def _origin(el: ET.Element | None) -> Transform:
    if el is None:
        return IDENTITY
    xyz = tuple(float(v) for v in el.get("xyz", "0 0 0").split())
    rpy = tuple(float(v) for v in el.get("rpy", "0 0 0").split())
    return xyz, tuple(p.getQuaternionFromEuler(rpy))  # type: ignore[return-value]


def link_tree(urdf_text: str, frozen_joints: set[str]) -> LinkTree:
    """Which link survives merging for every link (fixed + ``frozen_joints`` are merged)."""
    root_el = ET.fromstring(urdf_text)
    links = [lk.get("name") for lk in root_el.findall("link")]
    parent_of: dict[str, tuple[str, bool, Transform]] = {}
    for j in root_el.findall("joint"):
        child = j.find("child").get("link")
        parent = j.find("parent").get("link")
        fixed = j.get("type") == "fixed" or j.get("name") in frozen_joints
        parent_of[child] = (parent, fixed, _origin(j.find("origin")))
    roots = [lk for lk in links if lk not in parent_of]
    survivor: dict[str, str] = {}
    in_survivor: dict[str, Transform] = {}
    for link in links:
        cur, tf = link, IDENTITY
        while cur in parent_of and parent_of[cur][1]:
            parent, _, origin = parent_of[cur]
            tf = p.multiplyTransforms(origin[0], origin[1], tf[0], tf[1])
            cur = parent
        survivor[link] = cur
        in_survivor[link] = (tuple(tf[0]), tuple(tf[1]))  # type: ignore[assignment]
    return LinkTree(root=roots[0], survivor=survivor, in_survivor=in_survivor)


def _absolute_meshes(text: str, urdf_dir: Path) -> str:
    def repl(m: re.Match) -> str:
        fn = m.group(1)
        if fn.startswith("package://"):
            fn = fn[len("package://") :]
        path = Path(fn)
        if not path.is_absolute():
            path = urdf_dir / path
        return f'filename="{path}"'

    return re.sub(r'filename="([^"]+)"', repl, text)


def prepare_urdf(urdf: Path, frozen_joints: set[str]) -> tuple[Path, str]:
    """Return (path to load, URDF text). Rewrites a cached copy only when joints are frozen."""
    text = urdf.read_text()
    if not frozen_joints:
        return urdf, text
    new = text
    for name in frozen_joints:
        new, n = re.subn(rf'(<joint\s+name="{re.escape(name)}"\s+type=")(\w+)(")', r"\1fixed\3", new)
        if n == 0:
            new, n = re.subn(rf'(<joint\s+type=")(\w+)("\s+name="{re.escape(name)}")', r"\1fixed\3", new)
    new = _absolute_meshes(new, urdf.parent.resolve())
    digest = hashlib.sha256(new.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SIMGATE_CACHE", Path(tempfile.gettempdir()) / "simgate-cache")) / "urdf"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{urdf.stem}-{digest}.urdf"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(new)
        os.replace(tmp, out)
    return out, new
