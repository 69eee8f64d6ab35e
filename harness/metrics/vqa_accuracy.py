from __future__ import annotations

from harness.core.records import Sample
from harness.metrics import metric
from harness.metrics.normalise import normalise

REFERENCE = ("GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py VQAEval.evaluate "
             "(answers normalised always, as lmms-eval tasks/vqav2/utils.py vqav2_process_results)")


def vqa_accuracy_of(output: str, annotator_answers: list[str] | tuple[str, ...], variant: str = "official") -> float:
    """min(1, #other annotators who gave this answer / 3), averaged over leaving out each
    annotator in turn (10 answers: the 10 subsets of 9), both sides normalised by `variant`.

    The references normalise every time (the original script skips normalisation when all ten
    answers agree; lmms-eval and VLMEvalKit do not, and we follow them). With a single answer
    the references score 0 whatever the output (nobody is left to agree); we score the
    normalised exact match instead, a documented difference that no 10-answer set can meet.
    """
    got = normalise(output, variant)
    gts = [normalise(a, variant) for a in annotator_answers]
    if not gts:
        return 0.0
    if len(gts) == 1:
        return float(got == gts[0])
    hits = sum(g == got for g in gts)
    # Leaving out annotator i leaves hits - [i matched] matching answers among the others.
    return sum(min(1.0, (hits - (g == got)) / 3) for g in gts) / len(gts)


@metric("vqa_accuracy", version=2, reference=REFERENCE)
def vqa_accuracy(output: str, sample: Sample) -> float:
    """VQA accuracy as the official VQA evaluation: min(1, n/3) over 9 of 10 annotators, averaged."""
    return vqa_accuracy_of(output, sample.answers)


@metric("vqa_accuracy_vlmevalkit", version=1,
        reference="open-compass/VLMEvalKit vlmeval/dataset/utils/vqa_eval.py process_line (method vqa_score)")
def vqa_accuracy_vlmevalkit(output: str, sample: Sample) -> float:
    """VQA accuracy with VLMEvalKit's period rule: a period after a digit is kept ("3." stays)."""
    return vqa_accuracy_of(output, sample.answers, "vlmevalkit")


@metric("vqa_accuracy_evalai", version=1,
        reference="EvolvingLMMs-Lab/lmms-eval lmms_eval/tasks/textvqa/utils.py textvqa_process_results "
                  "(EvalAIAnswerProcessor.__call__)")
def vqa_accuracy_evalai(output: str, sample: Sample) -> float:
    """VQA accuracy as lmms-eval's TextVQA: EvalAI's processor also drops "," and "?" and splits "'s"."""
    return vqa_accuracy_of(output, sample.answers, "evalai")
