"""Data: paired infrared/visible images and where they come from.

- :mod:`benchmark.data.pairs`: a dataset folder's pairs, reading images, grey and YCbCr conversion, the data
  root (``$FUSION_DATA``, else ``data/`` in the project); its names are re-exported here.
- :mod:`benchmark.data.releases`: what each public dataset's publishers released, and the ``data`` command's
  check, manifest and prepare.
- :mod:`benchmark.data.synthetic`: generated pairs for smoke tests.
- :mod:`benchmark.data.sources`: one entry point that opens a configured dataset, real or synthetic.
"""

from benchmark.data.pairs import (
    IMAGE_EXTENSIONS,
    DataError,
    Pair,
    PairedDataset,
    Sample,
    carve,
    check_partners,
    data_root,
    dataset_folder,
    list_images,
    png_bytes,
    read_grey,
    read_pair,
    read_rgb_or_grey,
    read_split,
    rgb_to_ycbcr,
    stems_identity,
    to_grey,
    ycbcr_to_rgb,
)

__all__ = ["IMAGE_EXTENSIONS", "DataError", "Pair", "PairedDataset", "Sample", "carve", "check_partners", "data_root",
           "dataset_folder", "list_images", "png_bytes", "read_grey", "read_pair", "read_rgb_or_grey", "read_split",
           "rgb_to_ycbcr", "stems_identity", "to_grey", "ycbcr_to_rgb"]  # fmt: skip
