"""Actor adaptation: fine-tuning the 3DDFA-V2 regressor on one performer's unlabeled footage.

A top-level package beside ``ddfa_blender`` rather than inside it: it needs
PyTorch, which neither capture nor the Blender extension may need, and
``scripts/build_extension.py`` zips ``ddfa_blender/`` whole, so keeping the
training code out of that folder keeps it out of the zip without exclusion
rules, and ``ddfa_blender`` can never import it by accident. The dependency
runs one way: this package uses ``ddfa_blender.core`` (the face model, the
tracker, the ONNX converter), never the reverse. Its output is an ordinary
``.onnx`` regressor that ``capture.py --model`` and the panel's model field
take like the stock one.

Modules: :mod:`.mobilenet` (the trainable network), :mod:`.face_torch`
(parameters to vertices in PyTorch), :mod:`.losses` (VDC, WPDC, fWPDC, lrr,
2DASL terms), :mod:`.footage` (tracking and MediaPipe on the footage),
:mod:`.landmarks68` (MediaPipe's mesh as the 68 points), :mod:`.pseudo_labels`,
:mod:`.synthesis` (short-video synthesis), :mod:`.training` (meta-joint
optimisation), :mod:`.export` (ONNX, checked), :mod:`.adaptation` (the whole
pipeline, used by ``scripts/adapt.py``).
"""
