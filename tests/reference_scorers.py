"""Plain re-implementations of the public scorers our metrics claim to match, transcribed from
reading each reference's source and written in its own step-by-step style, so that the
agreement tests compare two independent codings of one rule.

- VQA: GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py (VQAEval) and the
  lmms-eval / VLMEvalKit variants of its processPunctuation.
- ANLS: lmms-eval lmms_eval/api/metrics.py anls (VLMEvalKit's anls_compute + hit_calculate).
- Relaxed accuracy: google-research/pix2struct pix2struct/metrics.py relaxed_correctness.
- Multiple choice: lmms-eval lmms_eval/tasks/_task_utils/mcq_extract.py extract_mcq_answer;
  VLMEvalKit vlmeval/utils/matching_util.py can_infer.
- OCRBench: Yuliang-Liu/MultimodalOCR OCRBench/example.py; lmms-eval tasks/ocrbench/utils.py.
- POPE: RUCAIBox/POPE evaluate.py.
"""

from __future__ import annotations

import re

# vqaEval.py VQAEval.__init__: the contraction table as the script lists it.
VQA_CONTRACTIONS = {'aint': "ain't",
 'arent': "aren't",
 'cant': "can't",
 'couldve': "could've",
 'couldnt': "couldn't",
 "couldn'tve": "couldn't've",
 "couldnt've": "couldn't've",
 'didnt': "didn't",
 'doesnt': "doesn't",
 'dont': "don't",
 'hadnt': "hadn't",
 "hadnt've": "hadn't've",
 "hadn'tve": "hadn't've",
 'hasnt': "hasn't",
 'havent': "haven't",
 'hed': "he'd",
 "hed've": "he'd've",
 "he'dve": "he'd've",
 'hes': "he's",
 'howd': "how'd",
 'howll': "how'll",
 'hows': "how's",
 "Id've": "I'd've",
 "I'dve": "I'd've",
 'Im': "I'm",
 'Ive': "I've",
 'isnt': "isn't",
 'itd': "it'd",
 "itd've": "it'd've",
 "it'dve": "it'd've",
 'itll': "it'll",
 "let's": "let's",
 'maam': "ma'am",
 'mightnt': "mightn't",
 "mightnt've": "mightn't've",
 "mightn'tve": "mightn't've",
 'mightve': "might've",
 'mustnt': "mustn't",
 'mustve': "must've",
 'neednt': "needn't",
 'notve': "not've",
 'oclock': "o'clock",
 'oughtnt': "oughtn't",
 "ow's'at": "'ow's'at",
 "'ows'at": "'ow's'at",
 "'ow'sat": "'ow's'at",
 'shant': "shan't",
 "shed've": "she'd've",
 "she'dve": "she'd've",
 "she's": "she's",
 'shouldve': "should've",
 'shouldnt': "shouldn't",
 "shouldnt've": "shouldn't've",
 "shouldn'tve": "shouldn't've",
 "somebody'd": 'somebodyd',
 "somebodyd've": "somebody'd've",
 "somebody'dve": "somebody'd've",
 'somebodyll': "somebody'll",
 'somebodys': "somebody's",
 'someoned': "someone'd",
 "someoned've": "someone'd've",
 "someone'dve": "someone'd've",
 'someonell': "someone'll",
 'someones': "someone's",
 'somethingd': "something'd",
 "somethingd've": "something'd've",
 "something'dve": "something'd've",
 'somethingll': "something'll",
 'thats': "that's",
 'thered': "there'd",
 "thered've": "there'd've",
 "there'dve": "there'd've",
 'therere': "there're",
 'theres': "there's",
 'theyd': "they'd",
 "theyd've": "they'd've",
 "they'dve": "they'd've",
 'theyll': "they'll",
 'theyre': "they're",
 'theyve': "they've",
 'twas': "'twas",
 'wasnt': "wasn't",
 "wed've": "we'd've",
 "we'dve": "we'd've",
 'weve': "we've",
 'werent': "weren't",
 'whatll': "what'll",
 'whatre': "what're",
 'whats': "what's",
 'whatve': "what've",
 'whens': "when's",
 'whered': "where'd",
 'wheres': "where's",
 'whereve': "where've",
 'whod': "who'd",
 "whod've": "who'd've",
 "who'dve": "who'd've",
 'wholl': "who'll",
 'whos': "who's",
 'whove': "who've",
 'whyll': "why'll",
 'whyre': "why're",
 'whys': "why's",
 'wont': "won't",
 'wouldve': "would've",
 'wouldnt': "wouldn't",
 "wouldnt've": "wouldn't've",
 "wouldn'tve": "wouldn't've",
 'yall': "y'all",
 "yall'll": "y'all'll",
 "y'allll": "y'all'll",
 "yall'd've": "y'all'd've",
 "y'alld've": "y'all'd've",
 "y'all'dve": "y'all'd've",
 'youd': "you'd",
 "youd've": "you'd've",
 "you'dve": "you'd've",
 'youll': "you'll",
 'youre': "you're",
 'youve': "you've"}

VQA_MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                  "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
VQA_ARTICLES = ["a", "an", "the"]
VQA_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
OFFICIAL_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
OFFICIAL_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
LMMS_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
VLMEVALKIT_PERIOD_STRIP = re.compile(r"(?<!\d)\.(?!\d)")


def vqa_process_punctuation(in_text, comma_strip=OFFICIAL_COMMA_STRIP, period_strip=OFFICIAL_PERIOD_STRIP):
    out_text = in_text
    for p in VQA_PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(comma_strip, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    # The references pass re.UNICODE where re.sub takes `count`.
    out_text = period_strip.sub("", out_text, re.UNICODE)
    return out_text


def vqa_process_digit_article(in_text):
    out_text = []
    temp_text = in_text.lower().split()
    for word in temp_text:
        word = VQA_MANUAL_MAP.get(word, word)
        if word not in VQA_ARTICLES:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in VQA_CONTRACTIONS:
            out_text[word_id] = VQA_CONTRACTIONS[word]
    return " ".join(out_text)


def _prep(text):
    text = text.replace("\n", " ")
    text = text.replace("\t", " ")
    return text.strip()


def vqa_official_answer(text):
    """vqaEval.py evaluate(), with the normalisation applied (as lmms-eval vqav2 and VLMEvalKit do)."""
    return vqa_process_digit_article(vqa_process_punctuation(_prep(text)))


def vqa_lmms_vqav2_answer(text):
    """lmms-eval tasks/vqav2/utils.py: process_punctuation (its comma pattern) + process_digit_article."""
    return vqa_process_digit_article(vqa_process_punctuation(_prep(text), LMMS_COMMA_STRIP, OFFICIAL_PERIOD_STRIP))


def vqa_vlmevalkit_answer(text):
    """VLMEvalKit vqa_eval.py process_answer (smp/misc.py process_punctuation)."""
    return vqa_process_digit_article(vqa_process_punctuation(_prep(text), OFFICIAL_COMMA_STRIP, VLMEVALKIT_PERIOD_STRIP))


def vqa_evalai_answer(text):
    """lmms-eval EvalAIAnswerProcessor.__call__ (TextVQA)."""
    item = text.lower()
    item = item.replace(",", "").replace("?", "").replace("'s", " 's")
    item = item.strip()
    item = item.replace("\n", " ").replace("\t", " ").strip()
    item = vqa_process_punctuation(item, LMMS_COMMA_STRIP, OFFICIAL_PERIOD_STRIP)
    return vqa_process_digit_article(item)


def vqa_score(prediction, answers, process=vqa_official_answer):
    gts = [process(a) for a in answers]
    res = process(prediction)
    gt_acc = []
    for i in range(len(gts)):
        others = [gts[j] for j in range(len(gts)) if j != i]
        matching = [item for item in others if item == res]
        gt_acc.append(min(1, float(len(matching)) / 3))
    return sum(gt_acc) / len(gt_acc)


def levenshtein_distance(s1, s2):
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    distances = range(len(s1) + 1)
    for i2, c2 in enumerate(s2):
        distances_ = [i2 + 1]
        for i1, c1 in enumerate(s1):
            if c1 == c2:
                distances_.append(distances[i1])
            else:
                distances_.append(1 + min((distances[i1], distances[i1 + 1], distances_[-1])))
        distances = distances_
    return distances[-1]


def anls_score(prediction, answers, thresh_hold=0.5):
    values = []
    for answer in answers:
        gt_answer = " ".join(answer.strip().lower().split())
        det_answer = " ".join(prediction.strip().lower().split())
        dist = levenshtein_distance(gt_answer, det_answer)
        length = max(len(answer.upper()), len(prediction.upper()))
        values.append(0.0 if length == 0 else float(dist) / float(length))
    question_result = 1 - min(values)
    if question_result < thresh_hold:
        question_result = 0
    return question_result


def relaxed_correctness(target, prediction, max_relative_change=0.05):
    def _to_float(text):
        try:
            if text.endswith("%"):
                return float(text.rstrip("%")) / 100.0
            else:
                return float(text)
        except ValueError:
            return None

    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        relative_change = abs(prediction_float - target_float) / abs(target_float)
        return relative_change <= max_relative_change
    else:
        return prediction.lower() == target.lower()


def relaxed_score(prediction, answers):
    return float(max(relaxed_correctness(t, prediction) for t in answers))


MCQ_PHRASES = ["the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
               "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
               "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
               "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは"]
MCQ_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
                "space": 2, "fallback": 0}


def extract_mcq_answer(response, choices=None):
    if not response or not response.strip():
        return ""
    all_choices = choices or ["A", "B", "C", "D", "E", "F", "G", "H"]
    text = response.strip()
    for char in [",", ".", "!", "?", ";", ":", "'", '"']:
        text = text.strip(char)
    text = " " + text + " "
    candidates = []
    for ch in all_choices:
        if f"({ch})" in text:
            candidates.append((ch, text.rfind(f"({ch})"), "parentheses"))
    for ch in all_choices:
        if f"{ch}." in text:
            candidates.append((ch, text.rfind(f"{ch}."), "period"))
    for ch in all_choices:
        if f"{ch}:" in text:
            candidates.append((ch, text.rfind(f"{ch}:"), "colon"))
    for ch in all_choices:
        if f"{ch})" in text:
            candidates.append((ch, text.rfind(f"{ch})"), "right_paren"))
    for ch in all_choices:
        if f"{ch} " in text:
            candidates.append((ch, text.rfind(f"{ch} "), "space"))
    text_lower = text.lower()
    for phrase in MCQ_PHRASES:
        idx = text_lower.find(phrase)
        if idx != -1:
            after = idx + len(phrase)
            for ch in all_choices:
                ch_pos = text.find(ch, after)
                if ch_pos != -1:
                    candidates.append((ch, ch_pos, "phrase"))
    stripped = text.strip()
    for ch in all_choices:
        if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha()):
            candidates.append((ch, 0, "start"))
    for ch in all_choices:
        if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            candidates.append((ch, len(text) - 1, "end"))
    if not candidates:
        for ch in all_choices:
            if ch in text:
                candidates.append((ch, text.rfind(ch), "fallback"))
    if not candidates:
        return ""
    candidates.sort(key=lambda x: (MCQ_PRIORITY.get(x[2], 0), x[1]), reverse=True)
    return candidates[0][0]


def mmstar_score(prediction, gt):
    return 1.0 if extract_mcq_answer(prediction, choices=["A", "B", "C", "D"]) == gt.strip().upper() else 0.0


_VERBOSE_ANSWER_RE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def can_infer_option(answer, choices):
    if "Failed to obtain answer via API" in answer:
        return False
    reject_to_answer = ["Sorry, I can't help with images of people yet.", "I can't process this file.",
                        "I'm sorry, but without the image provided", "Cannot determine the answer"]
    for err in reject_to_answer:
        if err in answer:
            return "Z"

    def count_choice(splits, choices, prefix="", suffix=""):
        cnt = 0
        for c in choices:
            if prefix + c + suffix in splits:
                cnt += 1
        return cnt

    answer_mod = answer
    for c in ".()[],:;!*#{}":
        answer_mod = answer_mod.replace(c, " ")
    splits = [x.strip() for x in answer_mod.split()]
    count = count_choice(splits, choices)
    if count == 1:
        for ch in choices:
            if ch in splits and splits.index(ch) > (len(splits) - 5):
                return ch
    elif count == 0 and count_choice(splits, {"Z", ""}) == 1:
        return "Z"
    match = _VERBOSE_ANSWER_RE.search(answer or "")
    if match and match.group(1).upper() in choices:
        return match.group(1).upper()
    return False


def can_infer_text(answer, choices):
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return False
    choices = {k: str(v).lower() for k, v in choices.items()}
    cands = []
    for k in choices:
        if choices[k] in answer:
            cands.append(k)
    if len(cands) == 1:
        return cands[0]
    return False


def can_infer(answer, choices):
    answer = str(answer)
    copt = can_infer_option(answer, choices)
    return copt if copt else can_infer_text(answer, choices)


def ocrbench_score(predict, answers, dataset_name):
    result = 0
    if dataset_name == "HME100k":
        for j in range(len(answers)):
            answer = answers[j].strip().replace("\n", " ").replace(" ", "")
            predict = predict.strip().replace("\n", " ").replace(" ", "")
            if answer in predict:
                result = 1
    else:
        for j in range(len(answers)):
            answer = answers[j].lower().strip().replace("\n", " ")
            predict = predict.lower().strip().replace("\n", " ")
            if answer in predict:
                result = 1
    return result


def _fold_fullwidth_ascii(text):
    folded = []
    for char in text:
        codepoint = ord(char)
        if 0xFF01 <= codepoint <= 0xFF5E:
            folded.append(chr(codepoint - 0xFEE0))
        elif codepoint == 0x3000:
            folded.append(" ")
        else:
            folded.append(char)
    return "".join(folded)


def ocrbench_lmms_score(pred, gt_ans, dataset_name):
    """lmms-eval tasks/ocrbench/utils.py ocrbench_process_results."""
    pred = pred.strip()
    score = 0
    if dataset_name == "HME100k":
        for j in range(len(gt_ans)):
            answer = gt_ans[j].strip().replace("\n", " ").replace(" ", "")
            predict = pred.strip().replace("\n", " ").replace(" ", "")
            if answer in predict:
                score = 1
    else:
        for j in range(len(gt_ans)):
            answer = _fold_fullwidth_ascii(gt_ans[j]).lower().strip().replace("\n", " ")
            predict = _fold_fullwidth_ascii(pred).lower().strip().replace("\n", " ")
            if answer in predict:
                score = 1
    return score


def pope_label(text):
    if text.find(".") != -1:
        text = text.split(".")[0]
    text = text.replace(",", "")
    words = text.split(" ")
    if "No" in words or "not" in words or "no" in words:
        return "no"
    return "yes"
