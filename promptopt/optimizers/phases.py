"""What a metric call was spent on: the names of :attr:`Record.phase
<promptopt.optimizers.evaluation.Record.phase>` and of :attr:`Budget.metric_calls_by_phase
<promptopt.optimizers.result.Budget.metric_calls_by_phase>`, shared by every optimizer so a
comparison can line them up."""

BOOTSTRAP = "bootstrap"  # teacher runs that collect demos
MINIBATCH = "minibatch"  # a parent or a child on a training minibatch; a MIPROv2 trial
TIE_EXTENSION = "tie_extension"  # more minibatch examples to settle a tie
VALIDATION = "validation"  # a candidate on the full validation set
MERGE = "merge"  # a merged candidate on a validation subsample
PROPOSAL = "proposal"  # LM calls writing new instructions: wall time only, never metric calls
