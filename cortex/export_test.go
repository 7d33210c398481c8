package cortex

// RewriteEndpoint exposes rewriteEndpoint to the black-box tests.
var RewriteEndpoint = rewriteEndpoint
