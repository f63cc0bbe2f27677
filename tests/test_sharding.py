"""Exports under sharded strategies: whole weights are gathered before ``save_pretrained`` (``rlhf.models.sharding``).
The FSDP2 path runs for real on CPU (``fully_shard`` over a one-process gloo group, in a subprocess); the export's
use of a gathered state dict is checked with a hand-made one that differs from the local weights."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlhf.methods.base import save_export
from rlhf.models.sharding import full_state_dict, is_sharded


def _tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50, n_positions=32,
                                      bos_token_id=0, eos_token_id=0))


def _tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, "[UNK]")))


def test_whole_models_export_their_own_weights_and_a_gathered_state_dict_replaces_them(tmp_path):
    model = _tiny_gpt2()
    assert not is_sharded(model) and full_state_dict(model) is None  # DDP / one device: nothing to gather
    gathered = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}  # stands in for the gather
    save_export(model, _tokenizer(), tmp_path / "export", gathered)
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "export"))
    weight = loaded.transformer.h[0].attn.c_attn.weight
    assert torch.equal(weight, torch.full_like(weight, 0.5))  # the gathered values, not the local ones


SHARDED = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    sys.path.insert(0, sys.argv[2])
    from test_sharding import _tiny_gpt2, _tokenizer
    from rlhf.methods.base import save_export
    from rlhf.models.sharding import full_state_dict, is_sharded
    from transformers import AutoModelForCausalLM
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3])
    dist.init_process_group("gloo", rank=0, world_size=1)
    model = _tiny_gpt2()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    assert is_sharded(model)
    state = full_state_dict(model)
    assert all(type(v) is torch.Tensor and v.device.type == "cpu" for v in state.values())
    assert set(state) == set(reference) and all(torch.equal(state[k], reference[k]) for k in reference)
    save_export(model, _tokenizer(), sys.argv[1], state)
    loaded = AutoModelForCausalLM.from_pretrained(sys.argv[1]).state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    dist.destroy_process_group()
    print("ok")
""")


def test_fsdp2_sharded_weights_are_gathered_whole_into_the_export(tmp_path):
    import random
    from pathlib import Path

    tests = str(Path(__file__).parent)
    port = str(random.randint(20000, 40000))
    out = subprocess.run([sys.executable, "-c", SHARDED, str(tmp_path / "export"), tests, port],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


GATHERS = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist, torch.multiprocessing as mp

    def main(rank, tests, port):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp._fully_shard import _fsdp_param_group as group
        sys.path.insert(0, tests)
        from test_sharding import _tiny_gpt2
        from rlhf.models.policy import _sample, sample
        from rlhf.models.sharding import shard_blocks
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        dist.init_process_group("gloo", rank=rank, world_size=2)
        model = shard_blocks(_tiny_gpt2(), init_device_mesh("cpu", (2,)))
        gathers = []
        real = group.foreach_all_gather
        group.foreach_all_gather = lambda *a, **k: gathers.append(1) or real(*a, **k)
        prompt, mask = torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long)
        args = (8, 0, 49)  # 8 new tokens, EOS 0, pad 49
        torch.manual_seed(0)
        ids, _ = sample(model, prompt, mask, *args, stop_early=False)
        once = len(gathers)
        gathers.clear()
        model.eval()
        torch.manual_seed(0)
        ids_per_step, _ = _sample(model, prompt, mask, *args, 1.0, 0, 1.0, None, False, None, None, 0)
        assert torch.equal(ids, ids_per_step)
        if rank == 0:
            print(once, len(gathers))
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(main, args=(sys.argv[1], sys.argv[2]), nprocs=2)
""")


def test_fsdp2_sampling_gathers_each_block_once_not_once_per_token(tmp_path):
    """sample() under FSDP2 (2 CPU processes) all-gathers each of the 3 units (2 blocks, the rest) once for 8 new
    tokens; a plain forward loop gathers the blocks again at every token, for the same tokens."""
    import random
    from pathlib import Path

    script = tmp_path / "gathers.py"  # (a file: spawned ranks import their function from it)
    script.write_text(GATHERS)
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent), str(random.randint(20000, 40000))],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    once, per_step = map(int, out.stdout.split()[-2:])
    assert once == 3 and per_step > 8, (once, per_step)


FROM_RANK_ZERO = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist, torch.multiprocessing as mp

    def main(rank, tests, port):
        from torch.distributed.device_mesh import init_device_mesh
        sys.path.insert(0, tests)
        from test_sharding import _tiny_gpt2
        from rlhf.models.sharding import full_state_dict, shard_from_rank_zero
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        dist.init_process_group("gloo", rank=rank, world_size=2)
        if rank == 0:
            model = _tiny_gpt2()
        else:
            with torch.device("meta"):
                model = _tiny_gpt2()
            assert all(p.is_meta for p in model.parameters())
        model.register_buffer("table", torch.arange(4.0) + 1 if rank == 0 else torch.empty(4, device="meta"),
                              persistent=False)  # (like rotary inv_freq: in no state dict)
        expected = {k: v.clone() for k, v in model.state_dict().items()} if rank == 0 else None
        shard_from_rank_zero(model, init_device_mesh("cpu", (2,)), torch.device("cpu"))
        assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
        assert torch.equal(model.table, torch.arange(4.0) + 1)
        local = sum(p.to_local().numel() for p in model.parameters())
        whole = full_state_dict(model)  # (on rank 0)
        out = model.eval()(input_ids=torch.tensor([[1, 2, 3]])).logits.sum()
        outs = [torch.zeros(()) for _ in range(2)]
        dist.all_gather(outs, out.detach())
        if rank == 0:
            assert all(torch.equal(whole[k], expected[k]) for k in expected)
            assert torch.allclose(outs[0], outs[1])
            print(local, sum(v.numel() for k, v in expected.items() if k != "lm_head.weight"))
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(main, args=(sys.argv[1], sys.argv[2]), nprocs=2)
""")


def test_a_rank_built_on_the_meta_device_gets_its_shard_of_rank_zeros_weights_and_buffers(tmp_path):
    """strategy=fsdp2: ranks other than 0 build the networks on the meta device (no memory); sharding fills their
    shard, and every buffer (a non-persistent one too), from rank 0, so both ranks hold rank 0's network: the
    gathered weights are rank 0's, the forward passes agree, and each rank holds half of the weights."""
    import random
    from pathlib import Path

    script = tmp_path / "from_rank_zero.py"
    script.write_text(FROM_RANK_ZERO)
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent), str(random.randint(20000, 40000))],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    local, whole = map(int, out.stdout.split()[-2:])
    assert abs(local - whole / 2) <= whole * 0.05, (local, whole)
