"""Unit quality: teacher quality against phone alignments (PNMI, purities), codebook statistics."""
