"""Chat code benchmarks (the bench's kernel scenario): ``pytest benchmarks --benchmark-only``.

One group per workload; inside a group the compiled build, the Python build
and the stdlib run the same workload (see ``asynchat_core.bench.kernel``), so
pytest-benchmark's table compares them side by side.  ``extra_info`` holds
frames per call: frames/s = frames_per_call / mean.
"""
import pytest

from asynchat_core.bench.kernel import make_workloads

WORKLOADS = ["lines32-64k", "lines32-4k", "records100", "resp-mix", "push-small", "push-large"]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_kernel(benchmark, chat_modules, workload):
    impl, asyncore, asynchat = chat_modules
    setup, unit = make_workloads(asyncore, asynchat)[workload]
    run = setup()
    frames = run()  # warm up, and the work done per call
    assert frames > 0
    benchmark.group = workload
    benchmark.name = impl
    benchmark.extra_info["frames_per_call"] = frames
    benchmark.extra_info["unit"] = unit
    assert benchmark(run) == frames
    fake = getattr(run, "fake", None)
    if fake is not None:
        assert fake.sends > 0
