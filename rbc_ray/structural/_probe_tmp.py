# per-epoch timing probe at full spec size: a few epochs of each model
import sys, time, json, torch
from rbc_ray.structural.config import calibration
from rbc_ray.structural.api import build
from rbc_ray.structural.solver import train
dev = sys.argv[1]; threads = int(sys.argv[2]); epochs = int(sys.argv[3])
torch.set_num_threads(threads)
out = {}
for model in sys.argv[4].split(","):
    cal = calibration(model, {"device": dev, "max_epochs": epochs, "warmup": 1})
    m = build(model, cal)
    conv, ep, log, st = train(m)
    if dev.startswith("cuda"): torch.cuda.synchronize()
    s = log.seconds
    out[model] = {"epochs": ep, "first_epoch_s": s[0], "mean_s_per_epoch_after_first": (s[-1]-s[0])/max(ep-1,1), "T": m.T}
    print(model, out[model], flush=True)
print(json.dumps(out))
