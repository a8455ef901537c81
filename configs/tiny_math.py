"""configs/tiny.py on a math JSONL in GSM8K's layout: prompts from the "question" field, rewards
from the symbolic grader against the answer after "####". Give the file on the command line:

    t1jax rl --config configs/tiny_math.py --config.rl.data_path=train.jsonl --config.rl.init_from=runs/tiny
"""

import importlib.util
import pathlib


def _tiny_config():
    spec = importlib.util.spec_from_file_location("tiny", pathlib.Path(__file__).with_name("tiny.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config():
    c = _tiny_config()
    c.run.workdir = "runs/tiny_math"
    c.sampling.max_prompt_len = 128  # a short problem and the \boxed{} instruction
    r = c.rl
    r.problem_field, r.answer_field, r.answer_format = "question", "answer", "gsm8k"
    r.sampling.max_new_tokens = 32
    r.grade_workers = 2
    return c
