// Upload a file with tus-js-client (as pinned in package.json) to a tus endpoint, from node.
//   node tus_js_upload.mjs ENDPOINT FILE CHUNK_SIZE PARALLEL_UPLOADS [DATA_DURING_CREATION]
// Prints {"url": <the upload's URL>} on success; exits 1 with the error otherwise.
import { readFileSync } from 'node:fs'
import { Upload } from 'tus-js-client'

const [endpoint, file, chunkSize, parallelUploads, duringCreation] = process.argv.slice(2)
const upload = new Upload(readFileSync(file), {
  endpoint,
  chunkSize: Number(chunkSize),
  parallelUploads: Number(parallelUploads),
  uploadDataDuringCreation: duringCreation === 'yes',
  retryDelays: [0, 100, 500],
  onSuccess: () => {
    process.stdout.write(JSON.stringify({ url: upload.url }) + '\n')
  },
  onError: (error) => {
    process.stderr.write(`tus-js-client: ${error}\n`)
    process.exit(1)
  },
})
upload.start()
