"""The harness the tests and the benchmarks share: real servers of their own, started
the way an operator would start them (a private Mosquitto with the project's broker
policy, fresh PostgreSQL databases, `transit gateway` as a subprocess, a pcscd with
virtual cards), on ports nothing else takes.

It sits above every package of the system and is imported only by `tests/` and
`bench/`; it is not part of the installed distribution.
"""
