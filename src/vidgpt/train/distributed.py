"""The distributed engine around the LM trainer: one Accelerator for 1 process, DDP and FSDP2.

The trainer stays the same under `accelerate launch` (configs/accelerate/, docs/DISTRIBUTED.md); what
differs between engines lives here:

- `make_accelerator`: the Accelerator. accelerate routes FSDP only on accelerators (CUDA, XPU, ...);
  on a CPU-only machine (`ACCELERATE_USE_CPU=1`, gloo) it silently falls back to DDP. For the CPU tests
  of the FSDP path we switch the state to FSDP with the plugin accelerate itself builds from the same
  `FSDP_*` environment variables, so accelerate's own FSDP2 code (`fully_shard`, DCP checkpoints,
  full-state gathering) runs on gloo. On GPUs nothing is switched.
- `plain_model_for_save`: the final save. Under FSDP the parameters are DTensor shards; every rank
  takes part in gathering the full state dict (`accelerator.get_state_dict`), and the main process
  loads it into a fresh, unsharded copy of the model (peft LoRA wrapper included) so the usual save
  path (merge, full or delta form) writes a directory plain transformers loads.
- `prepare`: `accelerator.prepare`, keeping peft's wrapped tied embedding/head in one FSDP unit; for the fast
  CPU loss heads on several processes (vidgpt.train.lm_loss), the model registered but not wrapped in DDP.
- `average_gradients`: that data parallel's gradient all-reduce. The fast heads call the decoder and the rows
  themselves, and DDP's reducer only arms its hooks in a forward through the DDP module, so under DDP their
  gradients would silently stay per-rank; instead every rank starts from rank 0's trainable weights and the
  summed gradients are divided by the number of processes once per optimizer step (one flat all-reduce).
- `gather_data_state`: every rank's data-stream position (vidgpt.train.lm_data.RowStream) for
  trainer_state.json, so --resume continues each stream where it stopped.
- `drop_log_after`: on --resume, the log lines a killed run wrote after its last checkpoint go.
- Sharded checkpoints need nothing here: `accelerator.save_state` writes DCP shards (one file per rank)
  when the FSDP plugin's state_dict_type is SHARDED_STATE_DICT (the committed configs).
"""

from __future__ import annotations

import os


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def make_accelerator(mixed_precision: str = "no"):
    """The Accelerator for this launch; FSDP on a CPU-only launch is switched on (see module doc)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    accelerator = Accelerator(mixed_precision=mixed_precision)
    if accelerator.distributed_type == DistributedType.MULTI_CPU and _flag("ACCELERATE_USE_FSDP"):
        _switch_cpu_to_fsdp(accelerator)
    return accelerator


def _switch_cpu_to_fsdp(accelerator) -> None:
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads FSDP_* from the environment, like accelerate does
    # both shared states: AcceleratorState refreshes itself from PartialState's on every construction
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def engine_name(accelerator, own_gradient_sync: bool = False) -> str:
    """'fsdp2' | 'fsdp1' | 'ddp' | 'dp' (data parallel, gradients averaged by average_gradients) | 'single'."""
    if is_fsdp(accelerator):
        return f"fsdp{accelerator.state.fsdp_plugin.fsdp_version}"
    if accelerator.num_processes == 1:
        return "single"
    return "dp" if own_gradient_sync else "ddp"


def plain_model_for_save(accelerator, model):
    """Every rank calls this. Main process: an unsharded module holding the trained weights; others: None."""
    if not is_fsdp(accelerator):
        return accelerator.unwrap_model(model) if accelerator.is_main_process else None
    state = accelerator.get_state_dict(model)  # collective: full tensors (on CPU) on the main process
    if not accelerator.is_main_process:
        return None
    return _fresh_copy(accelerator.unwrap_model(model), state)


def _fresh_copy(sharded, state: dict):
    """A new unsharded module of the same architecture (and the same peft adapter) with `state` loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..backbone import is_peft

    def strip(sd: dict) -> dict:  # FSDP1 with use_orig_params may prefix names
        return {k.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", ""): v for k, v in sd.items()}

    state = strip(state)
    if is_peft(sharded):
        from peft import get_peft_model

        base_cfg = sharded.get_base_model().config
        base = AutoModelForCausalLM.from_config(base_cfg)
        import copy as _copy

        copy = get_peft_model(base, _copy.deepcopy(sharded.peft_config[sharded.active_adapter]))
    else:
        copy = AutoModelForCausalLM.from_config(sharded.config)
    dtypes = {k: v.dtype for k, v in copy.state_dict().items()}
    with torch.no_grad():
        missing, unexpected = copy.load_state_dict(
            {k: v.to(dtypes.get(k, v.dtype)) for k, v in state.items()}, strict=False
        )
    tied = {"lm_head.weight"} if getattr(copy.config, "tie_word_embeddings", False) else set()
    missing = [k for k in missing if not any(k.endswith(t) for t in tied)]
    if missing or unexpected:
        from ..errors import TrainingError

        raise TrainingError(
            f"gathering the FSDP model for the final save: {len(missing)} missing / {len(unexpected)} unexpected "
            f"weights (first: {(missing or unexpected)[0]})"
        )
    if not is_peft(copy) and hasattr(copy, "tie_weights"):  # peft keeps a tied head tied itself
        copy.tie_weights()
    return copy


def gather_data_state(accelerator, rows) -> dict:
    """Every rank calls this: the data position of all ranks' streams (vidgpt.train.lm_data.RowStream), merged."""
    from .lm_data import RowStream

    part = rows.state_dict()
    if accelerator.num_processes == 1:
        return RowStream.merge([part])
    from accelerate.utils import gather_object

    return RowStream.merge(gather_object([part]))


def drop_log_after(log_path, step: int) -> int:
    """On --resume: drop the log records of steps after `step` (logged by a killed run after its last
    checkpoint; the resumed run logs them again). Written atomically. Returns how many were dropped."""
    import json
    from pathlib import Path

    from ..utils import atomic_write_text

    p = Path(log_path)
    if not p.is_file():
        return 0
    keep, dropped = [], 0
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut short by the kill
            dropped += 1
            continue
        if isinstance(rec.get("step"), int) and rec["step"] > step:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        atomic_write_text(p, "".join(x + "\n" for x in keep))
    return dropped


def prepare(accelerator, model, optimizer, own_gradient_sync: bool = False):
    """accelerator.prepare(model, optimizer), after the engine-specific adjustments a model needs.

    own_gradient_sync (several processes, not FSDP: the fast heads' engine `dp`): the model is registered with
    accelerate (its checkpoints and saves as usual) but not wrapped in DDP, every rank takes rank 0's trainable
    weights, and the trainer calls `average_gradients` before each optimizer step.

    LoRA on a tied-embedding model under FSDP2: peft wraps the shared embedding and head in
    TrainableTokensWrapper modules (the new rows train), which hide the tie from accelerate. It would put
    the embedding and the head in separate FSDP units sharing one weight (refused by FSDP2), and its
    `tie_weights` call (cpu_ram_efficient_loading) cannot find `embed_tokens.weight`. For the duration of
    prepare() the model shows accelerate no embedding modules, so both stay in the root unit, and every
    rank keeps its own copy of the (identical) initial weights instead of receiving rank 0's.
    """
    from ..backbone import is_peft

    if own_gradient_sync:  # asked only with several processes and a fast head (LossHead refuses those under FSDP)
        model = accelerator.prepare_model(model, evaluation_mode=True)  # registered, placed, not wrapped
        optimizer = accelerator.prepare_optimizer(optimizer)
        _broadcast_trainable(model)
        return model, optimizer
    hidden = False
    if is_fsdp(accelerator) and is_peft(model):
        base = model.get_base_model()
        inner = lambda m: getattr(getattr(m, "token_adapter", None), "base_layer", m)  # noqa: E731
        emb, out = base.get_input_embeddings(), base.get_output_embeddings()
        if out is not None and inner(emb).weight is inner(out).weight and (inner(emb) is not emb or inner(out) is not out):
            hidden = True
            model.get_input_embeddings = lambda: None
            model.get_output_embeddings = lambda: None
            plugin = accelerator.state.fsdp_plugin
            if getattr(plugin, "cpu_ram_efficient_loading", False):
                plugin.cpu_ram_efficient_loading = False
                os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"
    try:
        return accelerator.prepare(model, optimizer)
    finally:
        if hidden:
            del model.get_input_embeddings, model.get_output_embeddings


def _trainable(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


def _broadcast_trainable(model) -> None:
    """Every rank takes rank 0's trainable weights (DDP does the same when it wraps a model)."""
    import torch.distributed as dist

    for p in _trainable(model):
        dist.broadcast(p.data, src=0)


def average_gradients(model, world: int) -> None:
    """All ranks call this after the backward of the step's last micro-batch: each trainable parameter's
    gradient becomes the mean over the ranks (a parameter without a gradient counts as zeros)."""
    import torch
    import torch.distributed as dist

    params = _trainable(model)
    if world <= 1 or not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])
    dist.all_reduce(flat)
    flat /= world
    at = 0
    for p in params:
        g = flat[at : at + p.numel()].view_as(p).to(p.dtype)
        at += p.numel()
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
