# Run from the repository root:  python scripts/train_tiny_lm.py
#
# Trains sae-kit's built-in language model ("sae-kit-tiny"): a byte-level BPE tokenizer and a
# small GPT-2 on the train split of the standard library's pydoc_data.topics, then writes the
# model, tokenizer and a training summary to sae_kit/assets/sae-kit-tiny/. Deterministic given
# --seed; takes a few minutes on 2 CPU cores.
"""Train the built-in tiny GPT-2 shipped with sae-kit."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

# Make `sae_kit` importable when the script is run from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sae_kit.builtin import (  # noqa: E402
    BUILTIN_DATASET_NAME,
    BUILTIN_MODEL_NAME,
    builtin_model_dir,
    pydoc_texts,
)

EOS = "<|endoftext|>"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=builtin_model_dir())
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-positions", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=100, help="0: only at the end")
    return p.parse_args()


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style) with a single special token used as bos/eos."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],  # gets id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def encode_stream(tok: Tokenizer, texts: list[str]) -> torch.Tensor:
    """Concatenate documents, each preceded by the eos token (which doubles as bos)."""
    eos_id = tok.token_to_id(EOS)
    ids: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids.append(eos_id)
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def eval_loss(model: GPT2LMHeadModel, stream: torch.Tensor, seq_len: int, bs: int = 64) -> float:
    """Token-weighted mean next-token CE over non-overlapping windows covering the stream."""
    model.eval()
    n_win = (len(stream) - 1) // seq_len
    windows = stream[: n_win * seq_len + 1]
    total, count = 0.0, 0
    for start in range(0, n_win, bs):
        idx = torch.arange(start, min(start + bs, n_win))
        x = torch.stack([windows[i * seq_len : i * seq_len + seq_len + 1] for i in idx.tolist()])
        logits = model(x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def main() -> None:
    args = parse_args()
    t0 = time.time()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    train_texts, eval_texts = pydoc_texts("train"), pydoc_texts("eval")
    print(
        f"dataset {BUILTIN_DATASET_NAME}: {len(train_texts)} train docs "
        f"({sum(map(len, train_texts))} chars), {len(eval_texts)} eval docs "
        f"({sum(map(len, eval_texts))} chars)",
        flush=True,
    )

    raw_tok = train_tokenizer(train_texts, args.vocab_size)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw_tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,  # GPT-2 has no pad token; padding positions are masked anyway
        model_max_length=args.n_positions,
    )
    vocab = len(tok)
    train_ids = encode_stream(raw_tok, train_texts)
    eval_ids = encode_stream(raw_tok, eval_texts)
    print(
        f"tokenizer: vocab {vocab}, train {len(train_ids)} tokens, eval {len(eval_ids)} tokens "
        f"({time.time() - t0:.1f}s)",
        flush=True,
    )

    config = GPT2Config(
        vocab_size=vocab,
        n_positions=args.n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    arch = f"{args.n_layer}L/{args.n_embd}d/{args.n_head}h"
    print(f"model: GPT-2 {arch}, {n_params} params", flush=True)

    # Standard practice: no weight decay on biases, LayerNorm gains and the tied token embedding.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "wte" in n]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(args.seed)
    max_start = len(train_ids) - args.seq_len - 1
    offsets = torch.arange(args.seq_len + 1)
    model.train()
    t_train, cpu_train = time.time(), time.process_time()
    running = None
    for step in range(args.steps):
        starts = torch.randint(0, max_start + 1, (args.batch_size,), generator=gen)
        x = train_ids[starts[:, None] + offsets]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = model(x[:, :-1]).logits
        # Own loss rather than labels=: all seq_len positions get a target.
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % args.log_every == 0 or step == 0:
            el = time.time() - t_train
            eta = el / (step + 1) * (args.steps - step - 1)
            print(
                f"step {step + 1}/{args.steps} loss {running:.3f} lr {lr_at(step):.2e} "
                f"{el:.0f}s elapsed, eta {eta:.0f}s",
                flush=True,
            )
        if args.eval_every and (step + 1) % args.eval_every == 0:
            print(f"  held-out loss {eval_loss(model, eval_ids, args.seq_len):.4f}", flush=True)
    # Wall time is inflated on a busy machine; CPU time (all threads) is the steadier figure.
    train_time, train_cpu = time.time() - t_train, time.process_time() - cpu_train
    print(f"training took {train_time:.0f}s wall, {train_cpu:.0f}s CPU", flush=True)

    train_loss = eval_loss(model, train_ids, args.seq_len)
    heldout_loss = eval_loss(model, eval_ids, args.seq_len)
    ln_v = math.log(vocab)
    print(
        f"final: train loss {train_loss:.4f}, held-out loss {heldout_loss:.4f}, "
        f"ln(vocab) {ln_v:.4f}, ratio {heldout_loss / ln_v:.3f}",
        flush=True,
    )

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = model.float()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    summary = {
        "model_name": BUILTIN_MODEL_NAME,
        "dataset": f"{BUILTIN_DATASET_NAME} (pydoc_data.topics, Python {sys.version.split()[0]})",
        "seed": args.seed,
        "params": n_params,
        "n_layer": args.n_layer,
        "n_embd": args.n_embd,
        "n_head": args.n_head,
        "n_positions": args.n_positions,
        "vocab_size": vocab,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "lr": args.lr,
        "train_tokens": len(train_ids),
        "eval_tokens": len(eval_ids),
        "tokens_seen": args.steps * args.batch_size * args.seq_len,
        "train_loss": round(train_loss, 4),
        "heldout_loss": round(heldout_loss, 4),
        "ln_vocab": round(ln_v, 4),
        "train_seconds": round(train_time, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "threads": args.threads,
        "torch_version": torch.__version__,
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB) in {time.time() - t0:.0f}s total", flush=True)


if __name__ == "__main__":
    main()
