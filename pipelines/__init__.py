"""The jobs: each module has ``main(argv)`` and runs under ``python -m``, torchrun and torchx."""
