"""Starting workers with the tools a lab or a computing centre already has: OpenSSH
(:mod:`dsage_core.launch.ssh`) and Slurm (:mod:`dsage_core.launch.slurm`). Nothing here runs a
reactor: these are command-line front ends over ``ssh``/``sbatch`` and the ordinary client API."""
