# Generates typed_gen.rs (run from the repository root: python3 yurt-core/src/protobuf/typed_gen.py > yurt-core/src/protobuf/typed_gen.rs && cargo fmt -p yurt-core)
# from the k8s-pb 0.9 and k8s-openapi 0.29 (v1_37) sources in ~/.cargo/registry.
import glob, re, os, sys
P = glob.glob(os.path.expanduser('~/.cargo/registry/src/*/k8s-pb-0.9.0/src'))[0]
O = glob.glob(os.path.expanduser('~/.cargo/registry/src/*/k8s-openapi-0.29.0/src/v1_37'))[0]
ROOTS = [
 'api::apps::v1::Deployment', 'api::core::v1::Pod', 'api::core::v1::Service', 'api::batch::v1::Job',
 'api::batch::v1::CronJob', 'api::rbac::v1::Role', 'api::rbac::v1::RoleBinding', 'api::rbac::v1::ClusterRole',
 'api::rbac::v1::ClusterRoleBinding', 'api::core::v1::ResourceQuota', 'api::scheduling::v1::PriorityClass',
 'api::policy::v1::PodDisruptionBudget', 'api::networking::v1::Ingress',
]
SPECIAL = {'Time', 'MicroTime', 'Quantity', 'IntOrString', 'RawExtension', 'FieldsV1'}
# Go pointer scalars (*int32, *bool, *string, ...): a zero value in protobuf is meaningful there.
KEEP = {
 'PodSpec': 'termination_grace_period_seconds active_deadline_seconds automount_service_account_token share_process_namespace priority enable_service_links host_users set_hostname_as_fqdn runtime_class_name preemption_policy',
 'PodSecurityContext': 'run_as_user run_as_group run_as_non_root fs_group fs_group_change_policy supplemental_groups_policy se_linux_change_policy',
 'SecurityContext': 'privileged run_as_user run_as_group run_as_non_root read_only_root_filesystem allow_privilege_escalation proc_mount',
 'Probe': 'termination_grace_period_seconds',
 'Container': 'restart_policy',
 'EphemeralContainerCommon': 'restart_policy',
 'DeploymentSpec': 'replicas revision_history_limit progress_deadline_seconds',
 'DeploymentStatus': 'collision_count terminating_replicas',
 'JobSpec': 'parallelism completions active_deadline_seconds backoff_limit ttl_seconds_after_finished manual_selector suspend backoff_limit_per_index max_failed_indexes completion_mode pod_replacement_policy managed_by',
 'JobStatus': 'ready failed_indexes terminating',
 'CronJobSpec': 'starting_deadline_seconds suspend successful_jobs_history_limit failed_jobs_history_limit time_zone',
 'ServiceSpec': 'allocate_load_balancer_node_ports ip_family_policy load_balancer_class internal_traffic_policy traffic_distribution',
 'ServicePort': 'app_protocol',
 'ClientIPConfig': 'timeout_seconds',
 'PriorityClass': 'preemption_policy',
 'IngressSpec': 'ingress_class_name',
 'HTTPIngressPath': 'path_type',
 'PodDisruptionBudgetSpec': 'unhealthy_pod_eviction_policy',
 'ConfigMapVolumeSource': 'default_mode optional', 'SecretVolumeSource': 'default_mode optional',
 'ProjectedVolumeSource': 'default_mode', 'DownwardAPIVolumeSource': 'default_mode',
 'DownwardAPIVolumeFile': 'mode', 'KeyToPath': 'mode',
 'ConfigMapKeySelector': 'optional', 'SecretKeySelector': 'optional', 'ConfigMapEnvSource': 'optional',
 'SecretEnvSource': 'optional', 'ConfigMapProjection': 'optional', 'SecretProjection': 'optional',
 'ServiceAccountTokenProjection': 'expiration_seconds', 'HostPathVolumeSource': 'type',
 'CSIVolumeSource': 'read_only fs_type', 'ObjectMeta': 'deletion_grace_period_seconds',
 'OwnerReference': 'controller block_owner_deletion', 'Toleration': 'toleration_seconds',
 'TopologySpreadConstraint': 'min_domains node_affinity_policy node_taints_policy',
 'VolumeMount': 'recursive_read_only mount_propagation', 'ContainerStatus': 'started',
 'SeccompProfile': 'localhost_profile', 'AppArmorProfile': 'localhost_profile',
 'WindowsSecurityContextOptions': 'gmsa_credential_spec_name gmsa_credential_spec run_as_user_name host_process',
 'PodDNSConfigOption': 'value', 'Lifecycle': 'stop_signal', 'PodResourceClaim': 'resource_claim_name resource_claim_template_name',
 'PersistentVolumeClaimSpec': 'storage_class_name volume_mode volume_attributes_class_name',
 'TypedLocalObjectReference': 'api_group', 'TypedObjectReference': 'api_group namespace',
 'EmptyDirVolumeSource': '', 'ResourceClaim': 'request',
 'PodCertificateProjection': 'max_expiration_seconds',
 'Sysctl': '', 'ServiceAccountToken': '',
}
EMBED = {'local_object_reference', 'volume_source', 'handler', 'ephemeral_container_common', 'ingress_rule_value'}
KEEP = {k: set(v.split()) for k, v in KEEP.items()}

def pb_module(path):
    parts = path.split('::')
    return os.path.join(P, *parts, 'mod.rs')

pb_cache = {}
def pb_structs(mod):
    if mod in pb_cache: return pb_cache[mod]
    src = open(pb_module(mod)).read()
    out = {}
    for m in re.finditer(r'pub struct (\w+) \{(.*?)\n\}', src, re.S):
        fields = []
        for f in re.finditer(r'pub (r#\w+|\w+):\s*(.*?),\n', m.group(2) + '\n', re.S):
            fields.append((f.group(1), ' '.join(f.group(2).split())))
        out[m.group(1)] = fields
    pb_cache[mod] = out
    return out

def resolve(mod, ty):
    # message types referenced by a field type: return list of full paths
    res = []
    for t in re.findall(r'(?<![:\w])((?:super::)*(?:[a-z_0-9]+::)*[A-Z]\w*)', ty):
        if t in ('String',) or t.startswith('::'): continue
        n = t.count('super::')
        base = mod.split('::')
        rest = t.replace('super::', '')
        if n: base = base[:-n]
        full = '::'.join(base + rest.split('::')) if n else ('::'.join(base) + '::' + rest if '::' not in rest else rest)
        res.append(full)
    return res

oa_index = {}
oa_name = {}
for f in glob.glob(O + '/**/*.rs', recursive=True):
    src = open(f).read()
    for m in re.finditer(r'pub struct (\w+) \{(.*?)\n\}', src, re.S):
        mod = os.path.relpath(os.path.dirname(f), O).replace('/', '::')
        fields = re.findall(r'\n    pub (\w+):', m.group(2))
        oa_index[mod + '::' + m.group(1)] = fields
        oa_index[(mod + '::' + m.group(1)).lower()] = fields
        oa_name[(mod + '::' + m.group(1)).lower()] = m.group(1)

def norm(n):
    n = n[2:] if n.startswith('r#') else n
    return (n[:-1] if n.endswith('_') else n).replace('_', '')

seen, order, queue = set(), [], list(ROOTS)
while queue:
    full = queue.pop(0)
    if full in seen: continue
    seen.add(full)
    mod, name = full.rsplit('::', 1)
    if name in SPECIAL: continue
    fields = pb_structs(mod)[name]
    order.append((full, fields))
    for fname, ty in fields:
        for dep in resolve(mod, ty):
            queue.append(dep)

out = ['// @generated by typed_gen.py from the k8s-pb 0.9 and k8s-openapi 0.29 (v1_37) sources: one',
       '// `convert!` per message reachable from the kinds in `KINDS` that the hand-written converters do',
       '// not cover. Each lists every field of both structs, so a field added on either side is a',
       '// compile error. `keep` fields are Go pointers (`*int32`, `*bool`, `*string`): their zero value',
       '// is kept instead of being treated as absent.',
       '',
       'use super::typed::convert;',
       '']
missing = []
fieldmap = dict(order)
embedded = set()
for full, fields in order:
    if full.lower() not in oa_index: continue
    oan = {norm(f) for f in oa_index[full.lower()]}
    mod = full.rsplit('::', 1)[0]
    for f, ty in fields:
        if norm(f) not in oan:
            deps = resolve(mod, ty)
            if f in EMBED and len(deps) == 1 and deps[0] in fieldmap:
                embedded.add(deps[0])
for full, fields in sorted(order):
    name = full.rsplit('::', 1)[1]
    if full.lower() not in oa_index:
        if full not in embedded: missing.append(full)
        continue
    oafull = full.rsplit('::', 1)[0] + '::' + oa_name[full.lower()]
    oaf = list(oa_index[full.lower()])
    mod = full.rsplit('::', 1)[0]
    embeds = []
    for f, ty in fields:
        if norm(f) not in {norm(x) for x in oaf}:
            deps = resolve(mod, ty)
            if f in EMBED and len(deps) == 1 and deps[0] in embedded:
                efields = fieldmap[deps[0]]
                pairs = []
                for ef, _ in efields:
                    m = [x for x in oaf if norm(x) == norm(ef)]
                    assert m, (full, ef)
                    pairs.append(f'{ef} => {m[0]}')
                    oaf.remove(m[0])
                embeds.append((f, 'k8s_pb::' + deps[0], pairs))
    fields = [(f, t) for f, t in fields if f not in {e[0] for e in embeds}]
    oan = {norm(f): f for f in oaf}
    pbn = {norm(f): f for f, _ in fields}
    keep = KEEP.get(name, set())
    conv, kp, pbo, oao = [], [], [], []
    for f, _ in fields:
        n = norm(f)
        if n in oan:
            (kp if f.replace('r#', '') in keep else conv).append(f'{f} => {oan[n]}')
        else:
            pbo.append(f)
    for f in oaf:
        if norm(f) not in pbn: oao.append(f)
    body = '    ' + ',\n    '.join(conv) if conv else ''
    out.append(f'convert!(k8s_pb::{full} => k8s_openapi::{oafull} {{')
    out.append(f'    fields: [{", ".join(conv)}],')
    out.append(f'    keep: [{", ".join(kp)}],')
    out.append(f'    pb_only: [{", ".join(pbo)}],')
    out.append(f'    openapi_only: [{", ".join(oao)}],')
    out.append('    embedded: [' + ', '.join(f'{e}: {t} {{ {", ".join(pp)} }}' for e, t, pp in embeds) + '],')
    out.append('});')
sys.stdout.write('\n'.join(out) + '\n')
sys.stderr.write(f'{len(order)} structs; missing in openapi: {missing}\n')
