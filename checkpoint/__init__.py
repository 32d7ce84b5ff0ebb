"""Checkpoints: Stable Diffusion weights in safetensors, in the two layouts real weights ship in.

In memory a model is `{"unet": {...}, "vae": {...}, "text_encoder": {...}}`: flat dicts of NumPy arrays keyed by
the diffusers / transformers names the reference models' `param_shapes` declare. On disk, two layouts:

* a diffusers folder (`save_diffusers`, or `load_checkpoint(folder, ...)`): `unet/`, `vae/`, `text_encoder/`
  weight files next to their `config.json`, plus `scheduler/scheduler_config.json` and `model_index.json`;
* a single-file LDM checkpoint (`save_ldm_checkpoint`, or `load_checkpoint(file.safetensors, ...)`), the layout of
  CompVis / Stability's `v1-5-pruned-emaonly.safetensors` and `v2-1_512-ema-pruned.safetensors`.

The config comes from the checkpoint itself (`checkpoint_config`, or `load_checkpoint(path)` with no config): a
folder's config.json files in full, an LDM file's tensor shapes with the family's values where shapes say nothing,
notes saying which; or a built-in config is named and the checkpoint must match it.

Modules, one job each:
  safetensors_io    reading and writing safetensors files through the `safetensors` library
  expected          what a checkpoint must hold: the models' keys and shapes, the allow-list of skipped keys
  ldm               the single-file LDM names <-> in-memory names (`ldm_table`)
  ldm_config        an LDM file's config, inferred from its tensor shapes
  family            which config a file's shapes point to, as a hint in error messages
  diffusers_folder  a diffusers folder's weight files (single or sharded) and their names
  folder_config     a diffusers folder's config.json files read into sdcl's config: every field mapped, refused or
                    ignored by name
  diffusers_config  a diffusers folder's config.json files written from sdcl's config, and compared with a named one
  load              `checkpoint_config`, `load_checkpoint`, `find_family`; the mismatch message
  save              `save_ldm_checkpoint`, `save_diffusers`

Weight validation (`check_shapes`, `find_problems`, `Problems`, `CheckpointError`) belongs to the reference
layer (`sdcl.reference.validation`), which the models use too; it is re-exported here.
"""

from sdcl.checkpoint.diffusers_config import diffusers_configs
from sdcl.checkpoint.expected import COMPONENTS, IGNORED_KEYS, check_weights, expected_shapes
from sdcl.checkpoint.ldm import LdmTensor, ldm_table, text_layout
from sdcl.checkpoint.load import CheckpointConfig, checkpoint_config, find_family, load_checkpoint
from sdcl.checkpoint.save import save_diffusers, save_ldm_checkpoint
from sdcl.reference.validation import CheckpointError, Problems, check_shapes, find_problems

__all__ = [
    "COMPONENTS", "IGNORED_KEYS", "CheckpointConfig", "CheckpointError", "LdmTensor", "Problems", "check_shapes",
    "check_weights", "checkpoint_config",
    "diffusers_configs", "expected_shapes", "find_family", "find_problems", "ldm_table", "load_checkpoint",
    "save_diffusers", "save_ldm_checkpoint", "text_layout",
]
