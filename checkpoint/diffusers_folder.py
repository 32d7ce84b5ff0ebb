"""The weight files of a diffusers folder: where each component's tensors are and what they are called.

`unet/diffusion_pytorch_model.safetensors`, `vae/diffusion_pytorch_model.safetensors` and
`text_encoder/model.safetensors` (or `<stem>.<variant>.safetensors`), under the in-memory names, with three
tolerances when reading: a sharded `<name>.safetensors.index.json` instead of the single file; text-encoder keys
without the `text_model.` level (transformers >= 5 writes them so); and the VAE attention names of diffusers
< 0.15 (`query`, `key`, `value`, `proj_attn`), which the real SD 1.5 / 2.1 repositories still carry.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from sdcl.checkpoint.expected import expected_shapes, is_ignored
from sdcl.checkpoint.safetensors_io import SafetensorsFile, is_float_code
from sdcl.reference.configs import SDConfig
from sdcl.reference.validation import CheckpointError, Problems, find_problems

# component -> (subfolder, file stem)
DIFFUSERS_FILES = {"unet": ("unet", "diffusion_pytorch_model"), "vae": ("vae", "diffusion_pytorch_model"),
                   "text_encoder": ("text_encoder", "model")}
# transformers >= 5 saves CLIPTextModel without the text_model. level; these are its top-level modules.
_CLIP_TOP_LEVEL = ("embeddings.", "encoder.", "final_layer_norm.")
# diffusers < 0.15 named the VAE attention projections query / key / value / proj_attn.
_OLD_VAE_ATTENTION = re.compile(r"((?:en|de)coder\.mid_block\.attentions\.\d+\.)(query|key|value|proj_attn)\.")
_OLD_VAE_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _in_memory_name(comp: str, key: str) -> str:
    """A key of a diffusers-folder file -> the in-memory name."""
    if comp == "text_encoder" and key.startswith(_CLIP_TOP_LEVEL):
        return "text_model." + key
    if comp == "vae":
        return _OLD_VAE_ATTENTION.sub(lambda m: m.group(1) + _OLD_VAE_NAMES[m.group(2)] + ".", key)
    return key


@dataclass
class ComponentFiles:
    """One component's open weight files (`label` is the single file or the shard index, for messages) and the
    in-memory view of them: name -> shape, -> safetensors dtype name, -> (file, key in the file)."""
    comp: str
    label: str
    files: list
    shapes: dict
    dtypes: dict
    where: dict
    clashes: list

    def problems(self, config: SDConfig) -> Problems:
        """What is wrong with these tensors as `config`'s component (IGNORED_KEYS aside)."""
        expected = expected_shapes(config, (self.comp,))[self.comp]
        p = find_problems(expected, self.shapes, self.dtypes, lambda k: is_ignored(k, self.comp, config),
                          is_float_code)
        p.unexpected += [f"(duplicate) {c}" for c in self.clashes]
        return p

    def read(self, key: str, dtype):
        f, file_key = self.where[key]
        return f.read(file_key, dtype)

    def close(self):
        for f in self.files:
            f.close()


def open_folder(folder: str, components, variant) -> dict:
    """{component: ComponentFiles}, every file opened (and its header checked); close them with close_all."""
    opened = {}
    try:
        for comp in components:
            opened[comp] = _open_component(folder, comp, variant)
    except BaseException:
        close_all(opened)
        raise
    return opened


def close_all(opened: dict) -> None:
    for component in opened.values():
        component.close()


def _open_component(folder: str, comp: str, variant) -> ComponentFiles:
    sub, stem = DIFFUSERS_FILES[comp]
    name = f"{stem}.{variant}.safetensors" if variant else f"{stem}.safetensors"
    single = os.path.join(folder, sub, name)
    index = single + ".index.json"
    if os.path.isfile(single):
        return _view(comp, single, [SafetensorsFile(single)])
    if not os.path.isfile(index):
        there = sorted(os.listdir(os.path.join(folder, sub))) if os.path.isdir(os.path.join(folder, sub)) else None
        raise CheckpointError(f"{folder}: diffusers folder has no {comp} weights: neither {single} nor {index} "
                              f"exists" + (f" ({sub}/ holds: {', '.join(there) or 'nothing'})" if there is not None
                                           else f" (no {sub}/ subfolder)"))
    weight_map = _read_index(index)
    files, holder, bad = [], {}, []
    try:
        for shard in sorted(set(weight_map.values())):
            if os.path.basename(shard) != shard:
                raise CheckpointError(f"{index}: shard name {shard!r} is not a plain file name")
            f = SafetensorsFile(os.path.join(folder, sub, shard))
            files.append(f)
            for key in f.shapes:
                if key in holder:
                    bad.append(f"{key} is in both {holder[key]} and {shard}")
                holder[key] = shard
        for key, shard in weight_map.items():
            if key not in holder:
                bad.append(f"{key}: the index puts it in {shard}, which lacks it")
            elif holder[key] != shard:
                bad.append(f"{key}: the index puts it in {shard}, but it is in {holder[key]}")
        if bad:
            raise CheckpointError(f"{index}: the shards do not match the index:\n  " + "\n  ".join(bad))
    except BaseException:
        for f in files:
            f.close()
        raise
    return _view(comp, index, files)


def _read_index(index: str) -> dict:
    """The {key: shard file name} weight_map of a sharded checkpoint's index.json."""
    try:
        with open(index, encoding="utf-8") as fh:
            weight_map = json.load(fh)["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError("weight_map is not a {key: file name} object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a valid safetensors index: {e!r}") from None
    return weight_map


def _view(comp: str, label: str, files: list) -> ComponentFiles:
    """The in-memory names of one component's files, with the file keys that give the same name twice."""
    shapes, dtypes, where, clashes = {}, {}, {}, []
    for f in files:
        for key in f.shapes:
            name = _in_memory_name(comp, key)
            if name in where:
                clashes.append(f"{key} and {where[name][1]} both give {name}")
            shapes[name], dtypes[name], where[name] = f.shapes[key], f.dtypes[key], (f, key)
    return ComponentFiles(comp, label, files, shapes, dtypes, where, clashes)
