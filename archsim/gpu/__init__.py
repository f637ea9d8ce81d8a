"""GPUs: presets from spec sheets, measured attention throughput, calibration and validation of the GPU model.

`load` reads the presets (`presets/*.yaml`) into `archsim.arch.gpu.GPU`; `measurements` reads CSVs in the schema
of the published `attention_measured.csv` (a copy is packaged in `reference/`); `cases` resolves their rows to
presets and kernel families; `params` reads a calibration file (`calibration/v1.yaml`); `calibrate` fits the
model's per-family parameters on a split decided up front; `validate` compares predictions with measurements;
`roofline` is the baseline beside the model; `figures` draws. The model itself is `archsim.model.gpu` (engine),
`archsim.model.gpu_kernels` (kernel families) and `archsim.model.gpu_tiles` (tile work from the cascade). This
package runs that model, so it sits above it; the model reads only the spec (`archsim.arch.gpu`).
"""
