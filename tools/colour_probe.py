"""Where does the prompt's colour get lost? A linear probe of the object's colour on every layer's hidden states.

For --n records of a token shard folder (vidgpt data build-lm, one object per scene), the document is formatted
as the trainer formats it and run through the model once (up to the first object code); at each layer a
multinomial logistic regression learns the colour named in the caption (2/3 of the records) and is scored on
the rest, from two features:
- `before_object`: the hidden states averaged over the positions that predict the blueprint's codes up to and
  including its first object code: where the model must use the colour, with only background codes as input
  (the object's own codes would give the colour away under teacher forcing: averaged over the object's
  positions, even the input embeddings, layer 0, name it 96% of the time);
- `prompt_end`: the position that predicts the first video code.

Read it with tools/prompt_sensitivity.py: if the last layer holds the colour at `before_object` (high probe
accuracy) but the object codes' loss does not depend on the colour word, the head is what fails to use it; if
the colour is gone there, the attention from the codes back to the prompt is what has to learn.

    python tools/colour_probe.py model/ --shards data/lm10i/img_s1 --n 300
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from prompt_sensitivity import COLORS, load_model_or_checkpoint  # tools/ is on sys.path (the script's own folder)


def colour_of(caption: str) -> int | None:
    for w in caption.replace(",", " ").split():
        if w in COLORS:
            return COLORS.index(w)
    return None


def fit_probe(x_train, y_train, x_test, y_test, classes: int, l2: float = 1e-2, steps: int = 200) -> float:
    """Held-out accuracy of a multinomial logistic regression (standardised features, L2, L-BFGS)."""
    import torch

    mu, sd = x_train.mean(0, keepdim=True), x_train.std(0, keepdim=True) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    W = torch.zeros(a.shape[1], classes, requires_grad=True)
    c = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, c], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ W + c, y_train) + l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ W + c).argmax(1) == y_test).float().mean())


def main(argv=None) -> int:
    import pyarrow.parquet as pq
    import torch

    from vidgpt.layout import VISUAL
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a vidgpt model directory, or a training checkpoint (RUN/checkpoints/step-N)")
    ap.add_argument("--shards", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(0)

    lm = load_model_or_checkpoint(Path(args.model))
    lm.model.eval()
    chat = bool((lm.meta.get("layout") or {}).get("chat", True))
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=chat, loss_on=["visual"]))
    recs = []
    for f in sorted(glob.glob(f"{args.shards}/**/*.parquet", recursive=True)):
        for r in pq.read_table(f).to_pylist():
            if r.get("codes") is not None and not r.get("edit") and r.get("blueprint_object_mask") is not None \
                    and colour_of(r["caption"]) is not None:
                recs.append(r)
        if len(recs) >= args.n:
            break
    recs = recs[: args.n]
    obj_feats, end_feats, labels = [], [], []
    for r in recs:
        doc = fmt({**r, "captions": [r["caption"]]}, np.random.default_rng(0))
        vis = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
        first = next((i for i, m in zip(vis, r["blueprint_object_mask"]) if m), None)
        if first is None:
            continue
        ids = torch.tensor([doc.input_ids[:first]])  # nothing past the first object code is needed
        with torch.no_grad():
            hs = lm.model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        obj_feats.append(torch.stack([h[0, vis[0] - 1 : first].mean(0) for h in hs]))  # [layers+1, H]
        end_feats.append(torch.stack([h[0, vis[0] - 1] for h in hs]))
        labels.append(colour_of(r["caption"]))
    y = torch.tensor(labels)
    n = len(labels)
    cut = (2 * n) // 3
    chance = float(np.bincount(labels[cut:], minlength=len(COLORS)).max() / max(1, n - cut))
    obj, end = torch.stack(obj_feats), torch.stack(end_feats)  # [n, layers+1, H]
    table = []
    for layer in range(obj.shape[1]):
        row = {"layer": layer}
        for name, x in (("before_object", obj), ("prompt_end", end)):
            row[name] = fit_probe(x[:cut, layer].float(), y[:cut], x[cut:, layer].float(), y[cut:], len(COLORS))
        table.append(row)
    res = {"model": args.model, "records": n, "train": cut, "test": n - cut, "chance": chance, "layers": table}
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"colour probe, {n} records ({cut} fit, {n - cut} scored; majority class {chance:.0%})")
        print("layer  before object  prompt end")
        for row in table:
            print(f"{row['layer']:5d}  {row['before_object']:13.0%}  {row['prompt_end']:10.0%}")
    return 0


if __name__ == "__main__":
    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
