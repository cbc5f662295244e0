"""A real single-node Kubernetes cluster for the end-to-end tests (`lingo_node`).

containerd and runc, kubelet, kube-scheduler, kube-proxy, CNI and cluster DNS beside the loopback
control plane, running the project's own images, confined to a bridge the run creates
(host.py), with images built offline (images.py). See cluster.py.
"""
