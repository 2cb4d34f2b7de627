"""A test double inside the real Triton: speaks the ensemble contract and misbehaves on request.

The prompt the gateway sends contains the user's text, so the text drives it:
  "FAIL: <message>"  -> the request fails with an INTERNAL error carrying <message>
  "FAIL_MIDSTREAM"   -> (stream) sends two chunks, then an error
  "SLEEP: <seconds>" -> waits, checking for cancellation, then answers
  "TICK: <file>"     -> (stream) sends "tick " every 20 ms until cancelled (30 s at most), then
                        writes "cancelled <ticks>" or "finished <ticks>" to <file>
anything else        -> answers "ok"
"""

import re
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _text(request):
    return pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0].decode()


def _response(text, tokens):
    return pb_utils.InferenceResponse(output_tensors=[
        pb_utils.Tensor("text_output", np.array([[text.encode()]], dtype=np.object_)),
        pb_utils.Tensor("num_input_tokens", np.array([[1]], dtype=np.int32)),
        pb_utils.Tensor("num_output_tokens", np.array([[tokens]], dtype=np.int32)),
    ])


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            text = _text(request)
            failure = re.search(r"FAIL: ([^<\n]+)", text)
            sleep = re.search(r"SLEEP: ([0-9.]+)", text)
            tick = re.search(r"TICK: (/[^<\s]+)", text)
            if failure:
                error = pb_utils.TritonError(failure.group(1).strip(), pb_utils.TritonError.INTERNAL)
                sender.send(pb_utils.InferenceResponse(output_tensors=[], error=error), flags=FINAL)
            elif "FAIL_MIDSTREAM" in text:
                sender.send(_response("one ", 1))
                sender.send(_response("two ", 1))
                error = pb_utils.TritonError("failed in the middle of the stream", pb_utils.TritonError.INTERNAL)
                sender.send(pb_utils.InferenceResponse(output_tensors=[], error=error), flags=FINAL)
            elif tick:
                ticks, deadline = 0, time.monotonic() + 30
                while not sender.is_cancelled() and time.monotonic() < deadline:
                    sender.send(_response("tick ", 1))
                    ticks += 1
                    time.sleep(0.02)
                outcome = "cancelled" if sender.is_cancelled() else "finished"
                sender.send(flags=FINAL)
                with open(tick.group(1), "w") as f:
                    f.write(f"{outcome} {ticks}")
            elif sleep:
                deadline = time.monotonic() + float(sleep.group(1))
                while time.monotonic() < deadline and not sender.is_cancelled():
                    time.sleep(0.01)
                if sender.is_cancelled():
                    sender.send(flags=FINAL)
                else:
                    sender.send(_response("slept", 1), flags=FINAL)
            else:
                sender.send(_response("ok", 1), flags=FINAL)
        return None
