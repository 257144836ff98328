"""Attribution engines (TensorFlow, no Beam): loading models, the score, the chunked gradient core, one module
per method (`registry` names them), and the `Explainer` the Beam handler loads. Importing this package (or
`registry`) does not import TensorFlow; the modules that need it do."""
