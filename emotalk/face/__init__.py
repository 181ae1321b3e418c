"""Face analysis: landmark indices and measures (landmarks), MediaPipe tracking (tracking), head pose
(head_pose, rotations), face parsing (parsing, bisenet), the expression model and the emotional face
generator (expression, expression_texture, generator, thin_plate), the emotion recogniser (recognizer)."""
