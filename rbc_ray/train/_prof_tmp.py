import torch, time, sys
from rbc_ray.train import Trainer, load_experiment
cfg,_ = load_experiment("tune_configs/open_rbc.yaml", ["train.episodes_per_iteration=1","curriculum.firm_start=0","curriculum.government_start=0"] + sys.argv[1:])
tr = Trainer(cfg)
tr.train_iteration()
from torch.profiler import profile
with profile(record_shapes=True) as p:
    m = tr.train_iteration()
print(m["agent_steps_per_s"])
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
print(p.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=40))
