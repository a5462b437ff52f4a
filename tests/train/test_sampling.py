"""Samplers of the online loop: an OpenAI-compatible server (a loopback fake), vLLM's import guard, and a frozen
Hugging Face sampler (the offline baseline: every round samples from the starting policy)."""

import http.server
import json
import threading

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("httpx")

from pairkit.errors import InputError, MissingDependencyError  # noqa: E402
from pairkit.judges import CallableJudge  # noqa: E402
from pairkit.train import HFSampler, OnlineConfig, OpenAISampler, TrainConfig, VLLMSampler, train_online  # noqa: E402
from pairkit.train.online import _frozen, sample_completions  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402
from tests.train.test_online import PROMPTS, prefers_a  # noqa: E402


class _Server:
    """A loopback OpenAI-compatible server: ``n`` choices per request, text depending on the seed; the first
    request answers 503 once (the judge client's retry must take it)."""

    def __init__(self, wrong_n=False):
        self.bodies, self.paths, self.failed = [], [], False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not outer.failed:
                    outer.failed = True
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.bodies.append(body)
                outer.paths.append(self.path)
                n = body["n"] + (1 if wrong_n else 0)
                chat = self.path.endswith("/chat/completions")
                texts = [f"a{'a' * (j % 3)} s{body['seed']}" for j in range(n)]
                choices = [{"index": j, **({"message": {"role": "assistant", "content": t}} if chat else {"text": t})}
                           for j, t in enumerate(texts)]  # fmt: skip
                reply = json.dumps({"choices": choices, "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(reply.encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def test_openai_sampler_asks_n_completions_per_prompt_on_the_right_endpoint(server):
    sampler = OpenAISampler("policy", base_url=server.url, backoff=0.0)
    chat = [{"role": "user", "content": "say a"}]
    out = sampler.sample(["say a", chat], k=3, max_new_tokens=5, temperature=0.7, top_p=0.9, seed=10)
    assert out == [["a s10", "aa s10", "aaa s10"], ["a s11", "aa s11", "aaa s11"]]
    assert sorted(server.paths) == ["/v1/chat/completions", "/v1/completions"]
    text_body = next(b for b in server.bodies if "prompt" in b)
    assert text_body == {"model": "policy", "n": 3, "max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "seed": 10,
                         "prompt": "say a"}  # fmt: skip
    assert sampler._client.usage.failures.get("http_503") == 1  # retried by the judges' client
    assert sampler.identity() == {"backend": "openai", "base_url": server.url, "model": "policy"}


def test_openai_sampler_refuses_a_wrong_number_of_choices():
    s = _Server(wrong_n=True)
    try:
        with pytest.raises(InputError, match="asked for n=2 completions of prompt 0, got 3"):
            OpenAISampler("p", base_url=s.url, backoff=0.0).sample(["x"], k=2, max_new_tokens=3, temperature=1.0,
                                                                   top_p=1.0, seed=0)  # fmt: skip
    finally:
        s.close()


def test_the_loop_trains_on_a_servers_samples_and_caches_them(server, tokenizer, tmp_path):
    model = build_model(tokenizer, seed=0)
    sampler = OpenAISampler("policy", base_url=server.url, backoff=0.0)
    config = TrainConfig(lr=1e-2, batch_size=4, output_dir=str(tmp_path))
    online = OnlineConfig(rounds=1, prompts_per_round=2, k=3, max_new_tokens=4)
    hist = train_online(model, tokenizer, PROMPTS[:2], CallableJudge(prefers_a), sampler=sampler, config=config,
                        online=online)  # fmt: skip
    assert hist[0]["pairs"] == 2 and hist[0]["judge_calls"] == 6
    saved = json.loads((tmp_path / "samples" / "round-1.json").read_text())
    assert saved["key"]["backend"] == "openai" and saved["samples"][0][2].startswith("aaa")
    calls = len(server.bodies)
    train_online(build_model(tokenizer, seed=0), tokenizer, PROMPTS[:2], CallableJudge(prefers_a), sampler=sampler,
                 config=TrainConfig(lr=1e-2, batch_size=4, output_dir=str(tmp_path)), online=online,
                 resume=False)  # fmt: skip
    assert len(server.bodies) == calls  # the same sampler and round: read back from the cache, not asked again


def test_vllm_sampler_names_the_extra_when_vllm_is_missing():
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - vLLM cannot be installed in this project's CI
        pytest.skip("vllm is installed")
    with pytest.raises(MissingDependencyError, match=r"the vLLM sampler needs the optional package 'vllm'.*"
                                                     r"pip install 'pairkit\[vllm\]'"):  # fmt: skip
        VLLMSampler("any/model")


def test_a_frozen_hf_sampler_gives_the_offline_baseline(tokenizer, tmp_path):
    """Round 2's samples come from the starting policy, not from the policy trained in round 1."""
    model = build_model(tokenizer, seed=0)
    initial = _frozen(model)
    config = TrainConfig(lr=5e-2, batch_size=8, output_dir=str(tmp_path))
    online = OnlineConfig(rounds=2, prompts_per_round=4, k=3, max_new_tokens=6)
    train_online(model, tokenizer, PROMPTS[:4], CallableJudge(prefers_a), sampler=HFSampler(_frozen(model), tokenizer),
                 config=config, online=online)  # fmt: skip
    saved = json.loads((tmp_path / "samples" / "round-2.json").read_text())["samples"]
    import numpy as np

    prompts = [PROMPTS[:4][i] for i in np.random.default_rng(0).permutation(4)]
    assert saved == sample_completions(initial, tokenizer, prompts, k=3, max_new_tokens=6, seed=1)
    assert saved != sample_completions(model, tokenizer, prompts, k=3, max_new_tokens=6, seed=1)


def test_a_sampler_must_have_sample_and_identity(tokenizer):
    with pytest.raises(InputError, match=r"sampler must have sample\(...\) and identity\(\)"):
        train_online(build_model(tokenizer), tokenizer, PROMPTS[:2], CallableJudge(prefers_a), sampler=object())


@pytest.mark.slow
def test_ray_sampler_and_ray_judge_in_the_loop_on_a_local_cluster(tokenizer, tmp_path):
    """Two CPU actors sample (each with the policy's current weights) and two judge; the driver alone writes the
    sample and judgment caches; each prompt's samples are what one process draws for that prompt alone from its own
    seed, so one actor draws the same samples as two, under the same cache key."""
    ray = pytest.importorskip("ray")
    import os
    from pathlib import Path

    from pairkit.judges import RayJudge
    from pairkit.train import RaySampler

    root = Path(__file__).resolve().parents[2]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}", "OMP_NUM_THREADS": "1"}})
    try:
        model = build_model(tokenizer, seed=0)
        sampler = RaySampler(model, tokenizer, n_actors=2, num_cpus=0.5)
        judge = RayJudge(_prefers_a_judge, n_actors=2, num_cpus=0.5)
        config = TrainConfig(lr=5e-2, batch_size=8, output_dir=str(tmp_path))
        online = OnlineConfig(rounds=2, prompts_per_round=4, k=3, max_new_tokens=6)
        states = []
        hist = train_online(model, tokenizer, PROMPTS[:4], judge, sampler=sampler, config=config, online=online,
                            callback=lambda row: states.append({k: v.clone() for k, v in model.state_dict().items()}))
        assert [h["judge_calls"] for h in hist] == [12, 12] and all(h["pairs"] > 0 for h in hist)
        saved = json.loads((tmp_path / "samples" / "round-2.json").read_text())
        assert saved["key"]["backend"] == "ray-hf"
        # round 2 was sampled by the actors with the weights after round 1: each prompt alone, from its own seed
        import numpy as np

        from pairkit.train.sampling import _prompt_seed

        prompts = [PROMPTS[:4][i] for i in np.random.default_rng(0).permutation(4)]
        after_round_1 = build_model(tokenizer, seed=0)
        after_round_1.load_state_dict(states[0])
        kw = {"k": 3, "max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0}
        want = [sample_completions(after_round_1, tokenizer, [p], seed=_prompt_seed(1, i, p, **kw), **kw)[0]
                for i, p in enumerate(prompts)]  # fmt: skip
        assert saved["samples"] == want
        # one actor draws exactly what two draw (the seed of a prompt ignores the split), under the same cache key
        judge.shutdown()  # frees its CPU share for the one-actor sampler
        one = RaySampler(model, tokenizer, n_actors=1, num_cpus=0.5)
        sampler.update_weights(model)
        kw = {"k": 2, "max_new_tokens": 5, "temperature": 0.9, "top_p": 0.95}
        two_samples = sampler.sample(PROMPTS[:5], seed=3, **kw)
        assert one.sample(PROMPTS[:5], seed=3, **kw) == two_samples
        assert one.identity() == sampler.identity() == {"backend": "ray-hf", "policy": one.version}
        assert sampler.sample(PROMPTS[:5], seed=4, **kw) != two_samples  # the seed matters (not a constant)
        one.shutdown()
        sampler.shutdown()
    finally:
        ray.shutdown()


def _prefers_a_judge():
    return CallableJudge(prefers_a)
