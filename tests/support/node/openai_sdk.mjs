// The Node openai SDK against the sidecar: `node openai_sdk.mjs <scenario>`, printing one JSON line.
// SIDECAR_URL is the sidecar's root URL, MODEL the model to ask for.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.SIDECAR_URL}/v1`,
  apiKey: "sk-app-placeholder",
  maxRetries: 0,
});
const model = process.env.MODEL;
const input = "Say hello";

const scenarios = {
  async responses() {
    const response = await client.responses.create({ model, input, instructions: "Be brief." });
    return { text: response.output_text, status: response.status, usage: response.usage };
  },
  async "responses-stream"() {
    const stream = client.responses.stream({ model, input, instructions: "Be brief." });
    const deltas = [];
    const types = [];
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") deltas.push(event.delta);
    }
    const final = await stream.finalResponse();
    return { deltas, types, text: final.output_text, usage: final.usage };
  },
  async chat() {
    const completion = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: input }],
    });
    return { text: completion.choices[0].message.content, usage: completion.usage };
  },
  async "chat-stream"() {
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: input }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas = [];
    let usage = null;
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta?.content;
      if (piece) deltas.push(piece);
      if (chunk.usage) usage = chunk.usage;
    }
    return { deltas, text: deltas.join(""), usage };
  },
  async refused() {
    try {
      await client.responses.create({ model, input });
    } catch (error) {
      if (!(error instanceof OpenAI.APIError)) throw error;
      return { error: error.constructor.name, status: error.status, code: error.code, message: error.message };
    }
    throw new Error("the request was not refused");
  },
};

console.log(JSON.stringify(await scenarios[process.argv[2]]()));
