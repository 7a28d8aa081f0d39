"""Training: the device, class weights and the training loop with per-epoch checkpoints that
resume a run exactly.

Imports: data, batches, metrics, models, NumPy, pandas, torch, tqdm.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .batches import predict
from .data import CLASSES
from .metrics import macro_f1, per_class_scores
from .models import load_checkpoint


def get_device(verbose=True) -> torch.device:
    """Return CUDA when a usable GPU is present (printing its name), else the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        if verbose:
            print("GPU:", torch.cuda.get_device_name(device))
    else:
        device = torch.device("cpu")
        if verbose:
            print(f"no GPU: training on the CPU with {torch.get_num_threads()} threads")
    return device


def class_weights(counts, power=0.5, cap=20.0) -> np.ndarray:
    """Return loss weights (max count / count) ** power, capped; 1 for the largest class.

    The square root and the cap keep rare classes (F: about 400 training beats, Q: 8
    in DS1) from soaking up false positives, as full inverse-frequency weights do.
    """
    counts = np.maximum(np.asarray(counts, dtype=float), 1)
    return np.minimum((counts.max() / counts) ** power, cap).astype(np.float32)


def consistency_loss(logits_a, logits_b) -> torch.Tensor:
    """Return the mean Jensen-Shannon divergence (nats) between the class distributions of two
    views of the same beats (logits, (n, classes)): 0 where the model decides both alike.

    Training adds it (cfg "consistency", its weight) so that a beat read through another recorder,
    with other noise and gain, gets the same probabilities, not only the same label on average.
    Symmetric: neither view is the reference. Tried on DS1 (benchmarks/consistency_ds1.py) and not
    adopted: no shipped model is trained with it."""
    log_a, log_b = F.log_softmax(logits_a, 1), F.log_softmax(logits_b, 1)
    log_mean = torch.logsumexp(torch.stack([log_a, log_b]), 0) - np.log(2.0)
    # kl_div(input, target) is KL(target || input); "batchmean": the sum over classes, meaned over beats
    return 0.5 * (F.kl_div(log_mean, log_a, reduction="batchmean", log_target=True)
                  + F.kl_div(log_mean, log_b, reduction="batchmean", log_target=True))


def fit(name, model, spec, train, val, cfg, device, checkpoint_dir=None, draw_boost=None):
    """Train model on BeatSet train, choosing the epoch by validation macro-F1 over N, S, V, F.

    cfg: epochs, batch_size, lr, optimizer ("sgd" with momentum, or "adamw" with a
    one-cycle schedule), weight_decay, weighted (square-root class weights in the loss)
    or class_weights (explicit, in CLASSES order), sampling ("sqrt": each epoch draws beats
    with replacement so that each class's share goes with the square root of its count, the
    sampling counterpart of square-root weights at a fraction of the beats per epoch),
    epoch_size (beats drawn per epoch, None for all), augment (True: noise, gain, wander;
    "recorders": also each beat from a random recorder version), morph_dropout (the share of
    training beats whose beat and context inputs are blanked), consistency (0 or absent: off; else
    each step draws two augmented views of its beats, each with its own recorder version and noise,
    and adds this weight times their consistency_loss to the mean of their cross-entropies; needs
    augment), seed.
    val: a BeatSet, or None to keep the last epoch (cross-validation fixes the epochs).
    Saves a checkpoint each epoch to checkpoint_dir/NAME.ckpt and resumes from it
    when it exists for the same settings. draw_boost: None, or one multiplier per training beat of
    its chance to be drawn under sampling "sqrt" (a rare kind of beat within its class, such as V
    beats inside runs, drawn more often; benchmarks/vt_runs_ds1.py, not adopted); a resumed run must be
    given the same.
    Returns (model with the best weights, history).
    """
    from .config import progress_bar as tqdm

    model.to(device)
    params = model.parameters()
    if cfg["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9))
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 1e-2))
    epoch_size = min(cfg.get("epoch_size") or len(train), len(train))
    steps = -(-epoch_size // cfg["batch_size"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg["lr"], total_steps=cfg["epochs"] * steps) \
        if cfg["optimizer"] == "adamw" else None
    if cfg.get("class_weights") is not None:  # explicit weights, in CLASSES order
        weights = np.asarray(cfg["class_weights"], np.float32)
    elif cfg.get("weighted"):
        weights = class_weights(train.class_counts())
    else:
        weights = np.ones(len(CLASSES), np.float32)
    weights = torch.tensor(weights, device=device)
    draw = None
    if cfg.get("sampling") == "sqrt":
        draw = np.maximum(train.class_counts(), 1).astype(float)[train.labels] ** -0.5
        if draw_boost is not None:
            boost = np.asarray(draw_boost, dtype=float)
            if boost.shape != draw.shape or not np.all(np.isfinite(boost)) or np.any(boost <= 0):
                raise ValueError(f"draw_boost must hold one positive, finite number per training beat ({len(draw)}); "
                                 f"got shape {boost.shape}" + (f", smallest {np.nanmin(boost):g}" if boost.size else ""))
            draw = draw * boost
        draw /= draw.sum()
    elif cfg.get("sampling") is not None:
        raise ValueError(f"sampling must be 'sqrt' or None, not {cfg['sampling']!r}")
    elif draw_boost is not None:
        raise ValueError("draw_boost needs sampling='sqrt': without it every beat is drawn once an epoch")
    consistency = float(cfg.get("consistency") or 0.0)
    if consistency and not cfg.get("augment"):
        raise ValueError("consistency needs augment: its two views of a beat are two augmented draws")
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    history, best_score, best_state, start_epoch = [], -1.0, None, 0
    ckpt = Path(checkpoint_dir) / f"{name}.ckpt" if checkpoint_dir else None
    if ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt)
        # resume only the same run: same settings and the same architecture (repr includes its options)
        if state["cfg"] == {k: cfg[k] for k in sorted(cfg)} and state.get("model_repr") == repr(model):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            history, best_score, best_state = state["history"], state["best_score"], state["best_state"]
            start_epoch = state["epoch"] + 1
            print(f"{name}: resuming after epoch {start_epoch} from {ckpt}")
    for epoch in range(start_epoch, cfg["epochs"]):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg["seed"], epoch])  # per-epoch stream: a resumed run repeats it
        torch.manual_seed(cfg["seed"] * 1000 + epoch)
        order = rng.choice(len(train), epoch_size, p=draw) if draw is not None \
            else rng.permutation(len(train))[:epoch_size]
        model.train()
        total = 0.0
        for step in tqdm(range(steps), desc=f"{name} epoch {epoch + 1}/{cfg['epochs']}", leave=False):
            idx = order[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
            extra = {"morph_dropout": cfg["morph_dropout"]} if cfg.get("morph_dropout") else {}
            inputs = [x.to(device, non_blocking=True) for x in train.batch(spec, idx, cfg.get("augment"), rng, **extra)]
            target = torch.from_numpy(train.labels[idx]).to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                logits = model(*inputs).float()
                loss = F.cross_entropy(logits, target, weight=weights)
                if consistency:  # a second view of the same beats, drawn after the first
                    other = [x.to(device, non_blocking=True) for x in train.batch(spec, idx, cfg["augment"], rng, **extra)]
                    other_logits = model(*other).float()
                    loss = (loss + F.cross_entropy(other_logits, target, weight=weights)) / 2 \
                        + consistency * consistency_loss(logits, other_logits)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch + 1, "train_loss": total / epoch_size}
        if val is not None:
            probs = predict(model, val, spec, device)
            val_loss = float(F.nll_loss(torch.log(torch.from_numpy(probs) + 1e-9), torch.from_numpy(val.labels)))
            scores = per_class_scores(val.labels, probs.argmax(1))
            row.update({"val_loss": val_loss, "val_macro_f1": macro_f1(val.labels, probs.argmax(1)),
                        **{f"val_f1_{c}": float(scores.loc[c, "F1"]) for c in CLASSES[:4]}})
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if val is None or row["val_macro_f1"] > best_score:
            best_score = row.get("val_macro_f1", -1.0)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        print(f"{name} epoch {epoch + 1}: train loss {row['train_loss']:.3f}"
              + (f", val loss {row['val_loss']:.3f}, val macro-F1 {row['val_macro_f1']:.3f}" if val is not None else "")
              + f", {row['seconds']:.0f} s")
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"cfg": {k: cfg[k] for k in sorted(cfg)}, "model_repr": repr(model), "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler else None,
                        "history": history, "best_score": best_score, "best_state": best_state},
                       ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, pd.DataFrame(history)

