"""The data layer: the contract, loaders, the synthetic generator and derived statistics.

numpy/pandas only; nothing here imports torch.
"""
