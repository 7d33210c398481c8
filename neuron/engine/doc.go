// Package engine is the process harness of a neuron: it runs one inference
// engine child process per loaded model (llama.cpp's llama-server, vLLM,
// SGLang, the helexa-sim engine, or any OpenAI-compatible server) and
// supervises it like a careful init system.
//
// A Harness is built from the [[engines]] templates of neuron.toml
// (neuron.EngineConfig). Loading a model picks a free loopback port, expands
// the template's placeholders, starts the engine in its own process group,
// captures its output in a bounded buffer of lines and polls its ready path
// until it answers 200.
//
// # Templates
//
// Command and Env values may use these placeholders, replaced as whole
// tokens anywhere inside an argument:
//
//	{model}    LoadSpec.Source, or the model id when Source is empty
//	{id}       LoadSpec.ModelID
//	{port}     the port picked for the engine
//	{host}     the host the engine must listen on (WithHost, default 127.0.0.1)
//	{gpus}     the device indexes, comma separated ("0,2"); empty without devices
//	{context}  LoadSpec.Context: the context window of one request, in
//	           tokens (cortex sends the catalogue's limit.context); "0"
//	           when unset
//
// An argument written exactly "{context?}" or "{gpus?}" is optional: when
// the value is unset (context 0, no devices) the argument is left out, and
// so is the argument just before it when that one is a flag (starts with
// "-"). Write "--ctx-size", "{context?}" (llama-server) or
// "--max-model-len", "{context?}" (vLLM, where 0 is not a valid length):
// a load without a context then starts the engine on its own default (for
// both, the model's trained context, 131,072 tokens for Llama 3.1 8B), and
// the harness logs a warning.
//
// # Context and parallel slots
//
// {context} is per request: what one prompt and its answer may hold
// together. vLLM's --max-model-len means exactly that. llama-server
// divides --ctx-size among its --parallel slots unless its KV cache is
// unified (--kv-unified): with "--ctx-size 8192 --parallel 4" each request
// gets 2,048 tokens. Either add --kv-unified to the template (one shared
// KV cache of {context} tokens that every slot may fill: a request gets
// the whole context, concurrent requests share it, and the KV memory is
// that of {context} tokens), or give each slot its own context by setting
// --ctx-size to context × parallel in the model's engine arguments (the
// KV memory is then that of context × parallel tokens; size vram_mb for
// it). llama-server reports the context of each slot as n_ctx in /props
// (default_generation_settings) and /slots.
//
// # Per-model arguments
//
// A load's EngineArgs (the catalogue's engine_args) are applied to the
// expanded template: each Set entry replaces the value after its flag
// ("--flag", "value") or in "--flag=value" wherever the template writes
// the flag itself, and is appended as "--flag", "value" when the template
// has no such flag (also when an optional argument left it out); Set is
// applied in key order, then Extra is appended as written. These values
// are never expanded and never pass through a shell. The harness refuses
// (ErrInvalidSpec, 400 on the neuron's API), besides what
// neuron.EngineArgs.Validate refuses, a Set key or an Extra flag that the
// template owns: --host, --port, and any flag whose template value holds
// {model}, {id}, {port}, {host} or {gpus} (set those through the load's
// own fields).
//
// Every engine start is logged ("engine command") with its argv and the
// environment the harness adds. The value of a flag or variable one of
// whose words is key, apikey, token, secret, password, passwd or
// credentials (--api-key, --hf-token, HF_TOKEN) is logged as [redacted].
//
// Only "{name}" with a name made of letters, digits and underscores is a
// placeholder; any other brace (a JSON argument, say) is copied as is. An
// unknown placeholder is an error from New. Arguments are passed to the
// engine directly, never through a shell, so a model id cannot inject shell
// syntax unless a template itself runs "sh -c" around a placeholder.
//
// # Environment
//
// The engine inherits the neuron's environment, plus:
//
//	CUDA_DEVICE_ORDER=PCI_BUS_ID       so CUDA numbers GPUs like NVML does
//	CUDA_VISIBLE_DEVICES=<devices>     "0,2" for devices [0 2]
//
// With no devices in the LoadSpec, CUDA_VISIBLE_DEVICES is set to the empty
// string: the engine sees no GPU at all rather than every GPU, so a model
// never uses VRAM the neuron did not account for. The template's Env is
// applied last and overrides both (set HIP_VISIBLE_DEVICES = "{gpus}" there
// for ROCm).
//
// # Lifecycle
//
// A model is "loading" until the engine's ready path answers 200 (any other
// answer, or a refused connection, means still loading), then "loaded". The
// start timeout is measured from the start of the process; engine output
// does not extend it, because many engines log their own health probes.
// When the engine exits during its first load, or is not ready in time, the
// load fails with a *LoadError (errors.Is(err, neuron.ErrLoadFailed)) that
// carries the exit status and the last lines of output, and the harness
// forgets the model. An exit during load caused by a port taken between the
// pick and the engine's bind is retried on a fresh port, up to three times.
//
// Before it starts an engine for a model it does not run, Load checks (as
// Check does, without side effects) that the template's command resolves
// to an executable and that a {model} that is a local path (absolute, or
// ./ or ../ relative) exists; otherwise it fails with neuron.ErrCannotStart
// and starts nothing.
//
// Once loaded, the engine's ready path is probed every liveness interval
// (EngineConfig.LivenessInterval, default 5s), each probe bounded by
// LivenessTimeout (default 3s). A failed probe (no answer in time, a
// refused connection, any status but 200) counts in
// ModelInfo.LivenessFailures; an answer resets the count. After
// LivenessFailures failures in a row (default 3) the engine is taken for
// hung (stopped, deadlocked, wedged on its device): the model is marked
// "failed" first, so that no request is sent to it any more and requests
// its death cuts short are answered 503 model_not_ready by the Agent, then
// the engine's process group gets SIGKILL and it is restarted as a crashed
// engine is, with ModelInfo.LastFailure "unresponsive". A hung engine is
// thus found within LivenessFailures*max(LivenessInterval, LivenessTimeout)
// + LivenessTimeout, 18s with the defaults, and the requests it held fail
// then.
//
// An engine that exits while loaded, without being asked to, has crashed:
// the model becomes "failed" with the exit status and the last output lines
// in ModelInfo.LastError, and stays "failed" while the harness waits out a
// capped exponential backoff (WithBackoff, default 1s doubling up to 30s;
// the delay returns to the minimum once an engine has stayed ready for the
// maximum). It is then "recovering" from the restart of the process until
// it is ready again, and "loaded" once more with Restarts incremented.
// Each crash and each hang counts in ModelInfo.Failures, with its kind,
// time and reason in LastFailure, LastFailureAt and LastFailureReason. A
// restart that fails counts as another crash; the harness retries until
// the model is unloaded.
//
// Unload marks the model "unloading", sends SIGTERM to the engine's whole
// process group, SIGKILL after the template's stop timeout, waits for the
// process and forgets the model. After any exit of an engine the harness
// sends SIGKILL to its process group so that no worker or helper the engine
// spawned outlives it. On Linux the engine also gets SIGKILL should the
// neuron die (Pdeathsig); that covers the engine itself, not processes it
// forks, and is tied to the OS thread that started it, so it is a safety
// net, not a substitute for Close.
//
// The backoff, the start, stop and liveness timers and the times in
// ModelInfo run on the harness's clock (WithClock, default the system's),
// so that a test can move them with a clocktest.Fake; the polling of a
// loading engine and the timeout of each probe stay in real time.
//
// Every model is owned by one supervisor goroutine that starts its
// process, waits on it, probes it and restarts it; the Harness methods talk
// to it through channels and a mutex and never block on a load in progress,
// except Load itself.
package engine
