"""napari plugin of cyclegan-sdk: Layers ▸ Filter ▸ CycleGAN (translate, train, load presets and models).

The widgets are thin forms over :mod:`cyclegan_sdk`; the manifest is
``napari.yaml``. Importing this package imports neither Qt nor napari:
each contribution is imported when napari first uses it.
"""

__all__: list[str] = []
