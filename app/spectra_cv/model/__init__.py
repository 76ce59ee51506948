"""Model layer: selective scans (reference and fast PyTorch), the Mamba mixer and MambaUV (torch only)."""
