"""The batched twin: a torch approximation of the PyBullet Reach and Push tasks, N envs per
tensor, on CPU or CUDA. PyBullet stays the reference physics and the judge: `simgate sim
twin-check` measures the twin against it, and twin-trained policies are selected and promoted
on PyBullet evaluations only. No pybullet import in the modules the twin runs on (the GPU
machines have no pybullet wheel); fitting and checking against PyBullet live in `fit.py` and
`check.py`. Entry point: ``simgate.sim.twin.env.make_twin``.
"""
