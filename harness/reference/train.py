"""Train the reference model from random initialisation and save a checkpoint `mlx_vlm.load` reads.

Deterministic by construction: MLX's initialiser is seeded, every sample comes from a seeded
generator in a fixed order, and nothing depends on wall time; the same seed on the same machine
(and BLAS) gives bitwise-identical weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.checkpoint import MANIFEST, content_hash, dir_size
from harness.fixtures.common import save_tokenizer, train_tokenizer, write_json
from harness.fixtures.qwen2_5_vl import CHAT_TEMPLATE, CONFIG, PREPROCESSOR, SPECIALS
from harness.reference import NAME, data

IMAGE_TOKENS = 16  # 224-px suite images are resized to 112 px: 8x8 patches, 4x4 merged tokens


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 2400
    batch: int = 16
    # 1e-3 and above stall for ~1,000 steps and then learn shape slowly (2e-3 never learns colour);
    # 2.5e-4 reaches in 800 steps what 1e-3 reached in 2,400.
    lr: float = 2.5e-4
    warmup: int = 100
    weight_decay: float = 0.01
    clip: float = 1.0
    eval_every: int = 100
    eval_samples: int = 96


def model_config(vocab_size: int) -> dict[str, Any]:
    cfg = copy.deepcopy(CONFIG)
    cfg.update(vocab_size=vocab_size, torch_dtype="float32")
    side = int(IMAGE_TOKENS**0.5) * 28
    cfg["vision_config"].update(
        depth=3, hidden_size=128, intermediate_size=256, out_hidden_size=cfg["hidden_size"], num_heads=4,
        # One window covers the whole resized image: every block sees every patch.
        window_size=side, fullatt_block_indexes=[0, 1, 2],
    )
    return cfg


def preprocessor_config() -> dict[str, Any]:
    return {**PREPROCESSOR, "max_pixels": IMAGE_TOKENS * 28 * 28}


def write_skeleton(dst: Path) -> dict[str, Any]:
    """Tokenizer, config and preprocessor files: everything but the weights."""
    dst.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(SPECIALS, CHAT_TEMPLATE, eos="<|im_end|>", pad="<|endoftext|>")
    save_tokenizer(tok, dst, CHAT_TEMPLATE)
    config = model_config(len(tok))
    write_json(dst / "config.json", config)
    write_json(dst / "preprocessor_config.json", preprocessor_config())
    return config


def _load_processor(dst: Path) -> Any:
    import mlx_vlm.models.qwen2_5_vl  # noqa: F401  registers the processor load_processor needs
    from mlx_vlm.utils import load_processor

    return load_processor(dst)


class _Step:
    """The model's forward pass, batched: the stock one merges images and computes rope
    positions row by row in Python, which would dominate a CPU training step."""

    def __init__(self, model: Any, image_start: int, image_tokens: int) -> None:
        self.model = model
        self.image_start = image_start
        self.image_tokens = image_tokens
        self._positions: dict[tuple[int, int], Any] = {}
        self._rot: Any = None

    def prepare(self, ids: Any, grid: Any) -> None:
        """Rope positions and vision rotary tables for this batch shape, computed eagerly: the
        stock code reads them with .tolist(), which a compiled step cannot trace."""
        import mlx.core as mx

        batch, width = ids.shape
        if self._rot is None:
            self._rot = self.model.vision_tower.rot_pos_emb(grid[:1])
        if (batch, width) not in self._positions:
            # Rows differ only after the image (question, answer, right padding): positions
            # of the widest layout serve every row, padding being masked out of the loss.
            pos, _ = self.model.language_model.get_rope_index(ids[:1], grid[:1])
            self._positions[(batch, width)] = mx.broadcast_to(pos, (pos.shape[0], batch, width))
        mx.eval(self._rot, self._positions[(batch, width)])

    def vision(self, pixels: Any, n_img: int) -> Any:
        """The vision tower on same-size images as one batch. Equal to the stock tower when one
        window covers each image (window_size >= the resized side): the window order is then
        the identity and every block attends within its image."""
        import mlx.core as mx
        from mlx_vlm.models.qwen2_5_vl.vision import apply_rotary_pos_emb_vision

        vt = self.model.vision_tower
        x = vt.patch_embed(pixels)
        per = x.shape[0] // n_img
        x = x.reshape(n_img, per, -1)
        for blk in vt.blocks:
            a = blk.attn
            qkv = a.qkv(blk.norm1(x)).reshape(n_img, per, 3, a.num_heads, -1)
            q = apply_rotary_pos_emb_vision(qkv[:, :, 0], self._rot).transpose(0, 2, 1, 3)
            k = apply_rotary_pos_emb_vision(qkv[:, :, 1], self._rot).transpose(0, 2, 1, 3)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            o = mx.fast.scaled_dot_product_attention(q, k, v, scale=a.scale, mask=None)
            x = x + a.proj(o.transpose(0, 2, 1, 3).reshape(n_img, per, -1))
            x = x + blk.mlp(blk.norm2(x))
        return vt.merger(x.reshape(n_img * per, -1))

    def logits(self, ids: Any, pixels: Any) -> Any:
        import mlx.core as mx

        lm = self.model.language_model
        feats = self.vision(pixels, ids.shape[0])
        emb = lm.model.embed_tokens(ids)
        s, n = self.image_start, self.image_tokens
        emb = mx.concatenate([emb[:, :s], feats.reshape(ids.shape[0], n, -1), emb[:, s + n :]], axis=1)
        return lm(ids, inputs_embeds=emb, position_ids=self._positions[ids.shape]).logits


def _check_batched_forward(model: Any, step_fn: _Step, batch: dict[str, Any]) -> None:
    """The batched forward must equal mlx_vlm's own on one row, or training would teach a
    model that the harness then runs differently (guards against mlx-vlm changes)."""
    import mlx.core as mx

    ids = batch["input_ids"][:1]
    per = batch["pixel_values"].shape[0] // batch["input_ids"].shape[0]
    pixels = batch["pixel_values"][:per]
    stock = model(ids, pixel_values=pixels, image_grid_thw=batch["grid_thw"][:1]).logits
    step_fn.prepare(ids, batch["grid_thw"][:1])
    diff = float(mx.abs(stock - step_fn.logits(ids, pixels)).max())
    if diff > 1e-4:
        raise RuntimeError(f"batched training forward differs from mlx_vlm's by {diff:.2e}; this mlx-vlm is not supported")


def _to_mx(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    import mlx.core as mx

    return {k: mx.array(v) for k, v in batch.items()}


def weights_hash(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def train(dst: Path, cfg: TrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train into dst (created or overwritten); returns the training part of the manifest."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten

    from harness.fixtures.common import build_model

    t_start = time.perf_counter()
    load_start = os.getloadavg()
    config = write_skeleton(dst)
    processor = _load_processor(dst)
    mx.random.seed(cfg.seed)
    model = build_model(config)
    model.train()
    tok = processor.tokenizer
    batcher = data.Batcher(processor, model.config, eos_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_id=tok.pad_token_id)
    step_fn = _Step(model, batcher.image_start, batcher.image_tokens)

    def loss_fn(m: Any, ids: Any, mask: Any, pixels: Any) -> Any:
        logits = step_fn.logits(ids, pixels)[:, :-1]
        ce = nn.losses.cross_entropy(logits, ids[:, 1:], reduction="none") * mask[:, 1:]
        return ce.sum() / mask[:, 1:].sum()

    warmup = min(cfg.warmup, max(cfg.steps - 1, 1))
    schedule = optim.join_schedules(
        [optim.linear_schedule(cfg.lr / 100, cfg.lr, warmup),
         optim.cosine_decay(cfg.lr, max(cfg.steps - warmup, 1), cfg.lr / 50)],
        [warmup],
    )
    opt = optim.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
    value_and_grad = nn.value_and_grad(model, loss_fn)

    def update(ids: Any, mask: Any, pixels: Any) -> Any:
        loss, grads = value_and_grad(model, ids, mask, pixels)
        grads, _ = optim.clip_grad_norm(grads, cfg.clip)
        opt.update(model, grads)
        return loss

    # Compiling fuses MLX's CPU element-wise kernels (SiLU, GELU, norms): about a quarter off a step.
    state = [model.state, opt.state]
    update = mx.compile(update, inputs=state, outputs=state)

    eval_samples = [data.sample(cfg.seed, i, data.EVAL_STREAM) for i in range(cfg.eval_samples)]
    eval_batch = _to_mx(batcher.batch(eval_samples)) if eval_samples else None
    if eval_batch is not None:
        step_fn.prepare(eval_batch["input_ids"], eval_batch["grid_thw"])
        _check_batched_forward(model, step_fn, eval_batch)

    def evaluate() -> dict[str, float]:
        """Greedy exactness by teacher forcing: argmax is the target at every answer position
        (end-of-turn included) exactly when greedy decoding writes the answer and stops."""
        if eval_batch is None:
            return {}
        b = eval_batch
        pred = mx.argmax(step_fn.logits(b["input_ids"], b["pixel_values"])[:, :-1], axis=-1)
        m = b["loss_mask"][:, 1:]
        wrong = ((pred != b["input_ids"][:, 1:]) * m).sum(axis=1)
        ok = np.array(wrong == 0)
        out = {}
        for cat in ("colour", "shape", "count"):
            sel = [i for i, s in enumerate(eval_samples) if s.category == cat]
            out[cat] = float(ok[sel].mean()) if sel else float("nan")
        return out

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, unit="step", desc=NAME, dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    history = []
    acc: dict[str, float] = {}
    loss_value = float("nan")
    for step in range(cfg.steps):
        samples = [data.sample(cfg.seed, step * cfg.batch + j) for j in range(cfg.batch)]
        b = _to_mx(batcher.batch(samples))
        if step == 0:
            step_fn.prepare(b["input_ids"], b["grid_thw"])
        loss = update(b["input_ids"], b["loss_mask"], b["pixel_values"])
        mx.eval(model.parameters(), opt.state, loss)
        loss_value = float(loss.item())
        last = step == cfg.steps - 1
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
            acc = evaluate()
            history.append({"step": step + 1, "loss": round(loss_value, 4), **{k: round(v, 3) for k, v in acc.items()}})
        if bar is not None:
            bar.set_postfix_str(f"loss {loss_value:.3f} " + " ".join(f"{k} {v:.0%}" for k, v in acc.items()), refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()

    params = dict(sorted(tree_flatten(model.parameters())))
    mx.save_safetensors(str(dst / "model.safetensors"), params, metadata={"format": "mlx"})
    from harness.measure import environment

    env = environment.collect()
    return {
        "name": NAME,
        "arch": "qwen2_5_vl",
        "random_weights": False,
        "trained": True,
        "train_config": asdict(cfg),
        "parameters": int(sum(v.size for v in params.values())),
        "image_tokens": IMAGE_TOKENS,
        "data": data.description(),
        "generator": {"module": "harness.suites.shapes", "version": data.GENERATOR_VERSION},
        "final_loss": round(loss_value, 5),
        "train_eval": history,
        "train_time_s": round(time.perf_counter() - t_start, 1),
        "machine": {
            "platform": platform.platform(), "cpu": env.get("env_cpu", ""), "cores": os.cpu_count(),
            "load_avg_start": [round(x, 2) for x in load_start], "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "blas": env.get("env_blas", "") or "mlx bundled",
        "mlx_version": env.get("env_mlx", ""),
        "mlx_vlm_version": env.get("env_mlx_vlm", ""),
        "weights_sha256": weights_hash(dst),
    }


def write_manifest(dst: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    from harness import __version__

    manifest = {**manifest, "harness_version": __version__, "content_hash": content_hash(dst), "size_bytes": dir_size(dst)}
    write_json(dst / MANIFEST, manifest)
    return manifest


def read_manifest(dst: Path) -> dict[str, Any]:
    return json.loads((dst / MANIFEST).read_text())
