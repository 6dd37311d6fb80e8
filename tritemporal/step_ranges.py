"""Names of the training step's profiler ranges, opened by the model and read by `bench --parts`.

`TriTemporalModel.forward` and the objectives wrap each pass of a step in
`torch.profiler.record_function(NAME)`, so a profile of the real step (`tritemporal bench
--parts`, or any trace viewed in Perfetto) shows where its time goes. Outside a profiler a range
costs about 10 us of host time (docs/PERFORMANCE.md), and `torch.compile` ignores it (no graph
break). The `*_MASK` names are format strings taking the mask's index in the step (0 short,
1 long). A new range goes into `RANGES` too, which is how `bench --parts` knows it.
"""

TEACHER = "teacher forward, whole clip"
EMBED = "tubelet embedding"
STUDENT_MASK = "student, mask {}"
PREDICTOR_MASK = "predictor, mask {}"
STUDENT_NOW = "student, NOW"
PREDICTOR_SOON = "predictor, SOON"
TEACHER_PRESENT = "teacher forward, the present (SOON floor, teacher forcing)"
EVENTUALLY = "EVENTUALLY head and loss"
SUPERVISED = "outcome classifier and cross-entropy"

RANGES = (
    TEACHER,
    EMBED,
    STUDENT_MASK,
    PREDICTOR_MASK,
    STUDENT_NOW,
    PREDICTOR_SOON,
    TEACHER_PRESENT,
    EVENTUALLY,
    SUPERVISED,
)
